#!/usr/bin/env bash
# cli_autocompress.sh: `condenser autocompress` as a user runs it on a small subset of
# Fashion-MNIST: a search that meets its budget (exit 0; best.cndq evaluates to the test accuracy
# best.json reports, within the size budget; report.html parses as HTML and as XML; the --json
# fields); budgets refused with the key, unit or device class named (exit 2); an output directory
# that already holds a search refused without --resume, and with --resume under other settings
# or a state file whose result does not match its candidate;
# a budget nothing meets (exit 3, the closest kept); --arch students; mixed per-layer bits (fit the
# budget, kept across --resume); a graph teacher (latency measured, not
# predicted); a search killed with SIGKILL in the middle
# leaves a valid best.cndq, and --resume finishes it without running its finished candidates
# again (SIGTERM the same). Skipped (77) when Debian's Fashion-MNIST is not installed.
set -euo pipefail
bin=${CND_BIN:?CND_BIN must point at the condenser binary}
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || { echo "no Fashion-MNIST"; exit 77; }
d=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
arch="conv2d(8,3,pad=1) batchnorm relu maxpool(2) conv2d(16,3,pad=1) relu maxpool(2) flatten dense(32) relu dense(10)"
"$bin" train --arch "$arch" --epochs 1 --subset 3000 --threads 1 --out "$d/t.cnd" > "$d/train.log"

small=(--subset 2000 --val 300 --ratios 0.5,0.8 --wbits 8 --qat 0,1 --recipes 2:0.5
       --min-epochs 1 --max-epochs 2 --proxy-subset 400 --threads 1 --report-samples 50)

# A search that meets its budget.
"$bin" autocompress "$d/t.cnd" "${small[@]}" --budget size=20KB,latency=5ms@x86,max-drop=30 \
  --time 10m --out "$d/a" --json > "$d/a.json" 2> "$d/a.err" || fail "search: $(cat "$d/a.err")"
grep -q 'autocompress: rung 0/2, 1/4: candidate 0 ' "$d/a.err" || fail "no progress lines: $(cat "$d/a.err")"
grep -q 'budget met' "$d/a.err" || fail "summary: $(cat "$d/a.err")"
"$bin" eval "$d/a/best.cndq" > "$d/eval.log" || fail "best.cndq does not evaluate"
python3 - "$d/a.json" "$d/a" "$d/eval.log" <<'PY' || fail "summary or files: $(cat "$d/a.json")"
import json, os, re, sys
from html.parser import HTMLParser
s = json.load(open(sys.argv[1]))
d = sys.argv[2]
bj = json.load(open(os.path.join(d, "best.json")))
bj.pop("seconds")
assert bj == {k: v for k, v in s.items() if k != "seconds"}, "best.json differs from --json"
for k in ("model", "budget", "teacher_val_accuracy", "candidates", "results", "finished", "seconds",
          "met",
          "best_file", "test_accuracy", "accuracy_drop_points", "best"):
    assert k in s, k
assert s["finished"] and s["met"] and s["candidates"] == 4, s
b = s["best"]
for k in ("ratio", "wbits", "temperature", "alpha", "qat_epochs", "epochs", "subset",
          "val_accuracy", "bytes", "weight_bytes", "activation_bytes", "macs", "predicted_us",
          "measured_us", "spec", "layers"):
    assert k in b, k
size = os.path.getsize(os.path.join(d, "best.cndq"))
assert b["bytes"] == size <= 20000, (b["bytes"], size)
assert b["measured_us"] is not None and b["predicted_us"] is not None, b
assert 0 < b["weight_bytes"] < size and b["activation_bytes"] > 0 and b["macs"] > 0, b
assert b["layers"] and all("snr_db" in l for l in b["layers"]), b
# the test accuracy reported is the artifact's on the test split
ev = re.search(r"accuracy ([0-9.]+)", open(sys.argv[3]).read())
assert ev and abs(float(ev.group(1)) - s["test_accuracy"]) < 6e-5, (ev, s["test_accuracy"])
st = json.load(open(os.path.join(d, "state.json")))
assert len(st["results"]) == s["results"], (len(st["results"]), s["results"])
# latency measured for the finalists (the last two of the 3 rungs), predicted for every result
assert all((r["measured_us"] is not None) == (r["rung"] >= 1) for r in st["results"]
           if r["candidate"] != b["candidate"] or r["rung"] != b["rung"]), st["results"]
assert all(r["predicted_us"] is not None for r in st["results"])
# 4 candidates, halving: 4 + 2 + 1 rung results
assert s["results"] == 7, s["results"]
html = open(os.path.join(d, "report.html")).read()
class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
p = P()
p.feed(html)
p.close()
assert p.tags.count("svg") == 3 and p.tags.count("tr") == 1 + s["results"], p.tags.count("tr")
assert 'stroke="#d00"' in html  # the chosen point
PY
if command -v xmllint > /dev/null; then
  xmllint --noout "$d/a/report.html" || fail "report.html is not well-formed XML"
fi

# Budgets and options refused, the fault named, nothing written.
expect_refusal() { # $1: text the error must hold; the rest: arguments
  local want=$1 rc=0
  shift
  "$bin" autocompress "$d/t.cnd" "$@" --out "$d/x" > "$d/x.out" 2> "$d/x.err" || rc=$?
  [ "$rc" = 2 ] || fail "exit $rc (want 2) for $*: $(cat "$d/x.err")"
  grep -qF -- "$want" "$d/x.err" || fail "error for $* lacks '$want': $(cat "$d/x.err")"
  [ ! -e "$d/x" ] || fail "refused run $* wrote $d/x"
}
expect_refusal "unknown key 'flash'" --budget flash=64KB
expect_refusal "unknown unit 'XB'" --budget size=64XB
expect_refusal "no latency model for device class 'arm' (classes with one: x86)" --budget latency=2ms@arm
expect_refusal "--time 15q" --time 15q
expect_refusal "--wbits 8,6" --wbits 8,6

# A directory with a search in it: refused without --resume, and with other settings.
rc=0
"$bin" autocompress "$d/t.cnd" "${small[@]}" --out "$d/a" 2> "$d/again.err" || rc=$?
[ "$rc" = 2 ] && grep -q "already holds a search" "$d/again.err" || fail "reuse: $rc $(cat "$d/again.err")"
rc=0
"$bin" autocompress "$d/t.cnd" "${small[@]}" --budget size=20KB,latency=5ms@x86,max-drop=30 \
  --seed 2 --resume --out "$d/a" 2> "$d/again.err" || rc=$?
[ "$rc" = 2 ] && grep -q "other settings.*seed=1" "$d/again.err" || fail "resume other: $rc $(cat "$d/again.err")"

# A state file whose result does not match its candidate's recipe: refused, nothing run.
cp -r "$d/a" "$d/tampered"
python3 - "$d/tampered/state.json" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))
st["results"][0]["wbits"] = 4
json.dump(st, open(sys.argv[1], "w"))
PY
rc=0
"$bin" autocompress "$d/t.cnd" "${small[@]}" --budget size=20KB,latency=5ms@x86,max-drop=30 \
  --resume --out "$d/tampered" 2> "$d/tampered.err" || rc=$?
[ "$rc" = 2 ] && grep -q "result 0 (candidate 0, rung 0) is not part of this search" "$d/tampered.err" \
  || fail "tampered state: $rc $(cat "$d/tampered.err")"

# Nothing meets 1 KB: exit 3, the closest kept and valid.
rc=0
"$bin" autocompress "$d/t.cnd" "${small[@]}" --qat 0 --budget size=1KB --out "$d/u" --json \
  > "$d/u.json" 2> "$d/u.err" || rc=$?
[ "$rc" = 3 ] || fail "unmet budget: exit $rc $(cat "$d/u.err")"
grep -q "NO candidate meets the budget" "$d/u.err" || fail "unmet message: $(cat "$d/u.err")"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["met"] is False and s["best"]["ratio"] == 0.8, s' \
  "$d/u.json" || fail "unmet json: $(cat "$d/u.json")"
"$bin" eval "$d/u/best.cndq" > /dev/null || fail "closest best.cndq does not evaluate"

# Students of an --arch spec at width multipliers beside the pruned teacher: both searched.
"$bin" autocompress "$d/t.cnd" "${small[@]}" --qat 0 --budget size=20KB --out "$d/s" \
  --arch "conv2d(16,3,pad=1) relu maxpool(2) flatten dense(32) relu dense(10)" --width-mults 0.25,0.5 \
  --json > "$d/s.json" 2> "$d/s.err" || fail "--arch search: $(cat "$d/s.err")"
grep -q -- "--arch x0.500 W8A8: .*misses the budget" "$d/s.err" || fail "--arch sizes: $(cat "$d/s.err")"
python3 - "$d/s/state.json" <<'PY' || fail "--arch results: $(cat "$d/s/state.json")"
import json, sys
st = json.load(open(sys.argv[1]))
st = [r for r in st["results"] if r["width_mult"] is not None]
assert st and all(r["width_mult"] == 0.25 and r["ratio"] == 0 for r in st), st
assert st[0]["spec"] == "conv2d(4,3,pad=1) relu maxpool(2) flatten dense(8) relu dense(10)", st[0]["spec"]
PY
expect_refusal "only chain specs" --arch "a=conv2d(8,3) relu add(@a) flatten dense(10)"

# Mixed bits per layer: at 10 KB the ratio-0.5 model misses at 8 bits (about 11.9 KB) and fits
# at 4 (about 8.5 KB): the mixed probe picks 8 or 4 per layer so that the artifact fits; the
# bits are in best.json and state.json, and --resume (nothing left to run) reads them back.
mixed=(--ratios 0.5 --wbits mixed --qat 0 --budget size=10KB --out "$d/m" --json)
"$bin" autocompress "$d/t.cnd" "${small[@]}" "${mixed[@]}" > "$d/m.json" 2> "$d/m.err" \
  || fail "mixed search: $(cat "$d/m.err")"
"$bin" autocompress "$d/t.cnd" "${small[@]}" "${mixed[@]}" --resume > "$d/m2.json" 2> "$d/m2.err" \
  || fail "mixed resume: $(cat "$d/m2.err")"
grep -q "resuming: 1 finished candidates" "$d/m2.err" || fail "mixed resume: $(cat "$d/m2.err")"
python3 - "$d/m.json" "$d/m2.json" "$d/m/best.cndq" <<'PY' || fail "mixed: $(cat "$d/m.json" "$d/m.err")"
import json, os, sys
a, b = (json.load(open(f))["best"] for f in sys.argv[1:3])
assert a["wbits"] == "mixed" and sorted(set(a["layer_wbits"])) == [4, 8], a
assert len(a["layer_wbits"]) == 4, a  # conv2d, conv2d, dense, dense
assert a["bytes"] == os.path.getsize(sys.argv[3]) <= 10000, a["bytes"]
assert b["layer_wbits"] == a["layer_wbits"] and b["bytes"] == a["bytes"], (a, b)
PY
grep -q "W\[[48,]*\]A8, T 2" "$d/m.err" || fail "mixed progress line: $(cat "$d/m.err")"
"$bin" eval "$d/m/best.cndq" > /dev/null || fail "mixed best.cndq does not evaluate"
expect_refusal "--wbits 8,mixed,8" --wbits 8,mixed,8
expect_refusal "--wbits mix" --wbits mix

# A graph teacher (residual add): no latency prediction, the measured latency meets the budget.
"$bin" train --arch "a=conv2d(8,3,pad=1) relu conv2d(8,3,pad=1) add(@a) relu maxpool(2) flatten dense(10)" \
  --epochs 1 --subset 1000 --threads 1 --out "$d/g.cnd" > /dev/null
"$bin" autocompress "$d/g.cnd" "${small[@]}" --qat 0 --budget latency=1s,size=30KB --out "$d/g" \
  --json > "$d/g.json" 2> "$d/g.err" || fail "graph search: $(cat "$d/g.err")"
grep -q "us measured" "$d/g.err" || fail "graph latency before training: $(cat "$d/g.err")"
python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))["best"]; assert b["predicted_us"] is None and b["measured_us"] > 0, b' \
  "$d/g.json" || fail "graph json: $(cat "$d/g.json")"
"$bin" eval "$d/g/best.cndq" > /dev/null || fail "graph best.cndq does not evaluate"

# SIGTERM, then kill -9, in the middle of a search; each leaves a valid best.cndq; --resume
# continues from what the state holds.
big=(--subset 2000 --val 300 --ratios 0.5,0.6,0.7,0.8 --wbits 8,4 --qat 0 --recipes 2:0.5
     --widths 4 --min-epochs 1 --max-epochs 2 --proxy-subset 400 --threads 1 --report-samples 50)
nres() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["results"]))' "$1" 2>/dev/null || echo 0; }
interrupt() { # $1: signal, $2: results to wait for, $3: log; runs with --resume (none yet: starts)
  "$bin" autocompress "$d/t.cnd" "${big[@]}" --time 10m --out "$d/k" --resume 2> "$3" &
  pid=$!
  for _ in $(seq 600); do
    [ -f "$d/k/state.json" ] && [ "$(nres "$d/k/state.json")" -ge "$2" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "-$1" "$pid" 2>/dev/null || fail "the search ended before $1: $(cat "$3")"
  wait "$pid" 2>/dev/null || true
  pid=
  "$bin" eval "$d/k/best.cndq" > /dev/null || fail "best.cndq after $1 does not evaluate"
}
interrupt TERM 2 "$d/k0.err"
done0=$(nres "$d/k/state.json")
[ "$done0" -ge 2 ] || fail "terminated with $done0 results: $(cat "$d/k0.err")"
interrupt KILL $((done0 + 2)) "$d/k1.err"
grep -q "resuming: $done0 finished candidates" "$d/k1.err" || fail "resume after TERM: $(cat "$d/k1.err")"
done1=$(nres "$d/k/state.json")
[ "$done1" -ge $((done0 + 2)) ] || fail "killed with $done1 results: $(cat "$d/k1.err")"
"$bin" autocompress "$d/t.cnd" "${big[@]}" --time 10m --out "$d/k" --resume --json \
  > "$d/k.json" 2> "$d/k2.err" || fail "resume: $(cat "$d/k2.err")"
grep -q "resuming: $done1 finished candidates" "$d/k2.err" || fail "resume message: $(cat "$d/k2.err")"
ran=$(grep -c 'autocompress: rung ' "$d/k2.err" || true)
python3 - "$d/k.json" "$done1" "$ran" <<'PY' || fail "resumed search: $(cat "$d/k.json") $(cat "$d/k2.err")"
import json, sys
s = json.load(open(sys.argv[1]))
done1, ran = int(sys.argv[2]), int(sys.argv[3])
# 8 candidates: 8 + 4 + 2 + 1 results (subsets 400, 800, 1600, all 1700)
assert s["finished"] and s["results"] == 15, s
assert done1 + ran == 15, (done1, ran)
PY
"$bin" eval "$d/k/best.cndq" > /dev/null || fail "best.cndq after resume does not evaluate"
echo "cli_autocompress: ok"
