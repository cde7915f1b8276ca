#!/usr/bin/env bash
# cli_graph.sh: a graph student (mbconv blocks: depthwise convolutions, relu6, a residual add)
# through the commands as a user runs them: train, info (text and JSON show what each node
# reads), eval, ONNX export (its numbers: test_graph_torch.py), a killed-and-resumed run, and
# quantize to an int8 graph artifact and its eval, and the commands that do not handle graphs
# yet refusing it with a message naming the node (DP-SGD, job create) instead of producing
# something wrong. Skipped (77) without Debian's Fashion-MNIST.
set -euo pipefail
bin=${CND_BIN:?CND_BIN must point at the condenser binary}
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || { echo "no Fashion-MNIST"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
arch="conv2d(16,3,stride=2,pad=1) batchnorm relu6 mbconv(2,16,1) dwconv(3,stride=2,pad=1) hardswish gap dense(10)"

"$bin" train --arch "$arch" --epochs 2 --subset 1200 --threads 1 --lr 0.03 --out "$d/g.cnd" > "$d/train.log"
grep -q '^test accuracy 0\.[4-9]' "$d/train.log" || fail "train accuracy: $(cat "$d/train.log")"
"$bin" info "$d/g.cnd" > "$d/info.log"
grep -q 'n2=relu6' "$d/info.log" || fail "info arch: $(cat "$d/info.log")"
grep -Eq '^ *11  add +16x14x14 .*<- 10, 2$' "$d/info.log" || fail "info reads: $(cat "$d/info.log")"
"$bin" info "$d/g.cnd" --json > "$d/info.json"
python3 - "$d/info.json" <<'PY' || fail "info json"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["graph"] is True, r
add = r["layers"][11]
assert add["layer"] == "add" and add["inputs"] == [10, 2], add
assert r["layers"][0]["inputs"] == [-1]
PY
acc=$(sed -n 's/^test accuracy \([0-9.]*\).*/\1/p' "$d/train.log")
"$bin" eval "$d/g.cnd" | grep -q "accuracy $acc" || fail "eval disagrees with train ($acc)"

"$bin" export "$d/g.cnd" --onnx --out "$d/g.onnx" > "$d/export.log" || fail "export"
[ -s "$d/g.onnx" ] || fail "export wrote nothing"

# Killed after its first epoch, the run resumes from the checkpoint to the same model.
"$bin" train --arch "$arch" --epochs 2 --subset 1200 --threads 1 --lr 0.03 --out "$d/k.cnd" \
  > "$d/k.log" 2>&1 &
pid=$!
for _ in $(seq 600); do [ -f "$d/k.cnd.ckpt" ] && break; sleep 0.1; done
[ -f "$d/k.cnd.ckpt" ] || fail "no checkpoint after the first epoch"
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
"$bin" train --arch "$arch" --epochs 2 --subset 1200 --threads 1 --lr 0.03 --out "$d/k.cnd" --resume \
  > "$d/resume.log"
grep -q "^test accuracy $acc" "$d/resume.log" || fail "resumed run differs: $(cat "$d/resume.log")"

# Refused, naming the first node the command cannot handle.
refused() { # COMMAND... : exits non-zero and says "does not handle graph models"
  if "$@" > "$d/out.log" 2>&1; then fail "accepted: $*"; fi
  grep -q 'does not handle graph models or their layers yet: the model has layer 3 (relu6)' \
    "$d/out.log" || fail "message of $*: $(cat "$d/out.log")"
}
# Quantized to an int8 graph artifact (format version 2): batchnorm folded into the (depthwise)
# convs, one epoch of QAT through the graph, integer accuracy within 2 points of the float model,
# self-tests pass, eval of the artifact agrees, info shows the liveness-planned activations.
"$bin" quantize "$d/g.cnd" --data fmnist --subset 1000 --calib 200 --qat-epochs 1 \
  --report-samples 200 --out "$d/g.cndq" > "$d/q.log" 2>&1 || fail "quantize: $(cat "$d/q.log")"
python3 - "$d/q.log" <<'PY' || fail "quantize accuracy: $(cat "$d/q.log")"
import re, sys
t = open(sys.argv[1]).read()
f, i = map(float, re.search(r"test accuracy: float ([0-9.]+)\s+integer ([0-9.]+)", t).groups())
assert abs(f - i) <= 0.02, (f, i)
PY
iacc=$(sed -n 's/^test accuracy: float [0-9.]*  integer \([0-9.]*\).*/\1/p' "$d/q.log")
"$bin" eval "$d/g.cndq" > "$d/qe.log" 2>&1 || fail "eval cndq: $(cat "$d/qe.log")"
grep -q "accuracy $iacc" "$d/qe.log" || fail "eval of the artifact disagrees ($iacc): $(cat "$d/qe.log")"
"$bin" info "$d/g.cndq" > "$d/qi.log"
grep -q 'self-test 4 vectors: passed' "$d/qi.log" || fail "self-test: $(cat "$d/qi.log")"
python3 - "$d/qi.log" <<'PY' || fail "arena plan: $(cat "$d/qi.log")"
import re, sys
m = re.search(r"activations (\d+) bytes .*; (\d+) if each", open(sys.argv[1]).read())
assert int(m.group(1)) < int(m.group(2)), m.groups()
PY
head -c 8 "$d/g.cndq" | od -An -tu2 | awk '{exit !($3 == 2)}' || fail "not format version 2"
refused "$bin" train --arch "$arch" --epochs 1 --subset 500 --threads 1 --dp-noise 1 \
  --out "$d/dp.cnd"
"$bin" ca init --dir "$d/ca" --name "graph test" > /dev/null
"$bin" coordinator init --dir "$d/coord" --ca "$d/ca" > /dev/null
# a federated job takes a graph student, but not DP-SGD in its recipe
refused "$bin" job create --dir "$d/coord" --name graph --student-arch "$arch" \
  --teacher "$d/g.cnd" --rounds 1 --sites 2 --dp-noise 1 --dp-site-samples 1000
"$bin" job list --dir "$d/coord" | grep -q graph && fail "job create stored the job"
echo "cli_graph: ok"
