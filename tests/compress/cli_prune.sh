#!/usr/bin/env bash
# cli_prune.sh: `condenser prune` and `distill --init` as a user runs them on a small subset of
# Fashion-MNIST: a CNN pruned by ratio (L1) and fine-tuned by distillation, by a MAC target
# (Taylor score), by a byte target (JSON summary); the pruned file is genuinely smaller (info's
# parameter count and MACs, the file size) and evaluates to the accuracy it records; a student
# distilled from the pruned model (--init); the errors (exit codes, messages naming what is
# wrong). `condenser predict` is cli_predict.sh's.
# Skipped (77) when Debian's Fashion-MNIST is not installed.
set -euo pipefail
bin=${CND_BIN:?CND_BIN must point at the condenser binary}
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || { echo "no Fashion-MNIST"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
arch="conv2d(8,3,pad=1) batchnorm relu maxpool(2) conv2d(16,3,pad=1) relu maxpool(2) flatten dense(32) relu dense(10)"

"$bin" train --arch "$arch" --epochs 1 --subset 3000 --threads 1 --out "$d/t.cnd" > "$d/train.log"
grep -q '^test accuracy 0\.[6-9]' "$d/train.log" || fail "train: $(cat "$d/train.log")"

# Half the channels of every layer but the class scores; the architecture, counts and file shrink.
"$bin" prune "$d/t.cnd" --out "$d/p.cnd" --ratio 0.5 --epochs 2 --subset 3000 --threads 1 > "$d/p.log"
grep -q 'channels of layer 1 (conv2d(8,3,pad=1)): 8 -> 4' "$d/p.log" || fail "plan: $(cat "$d/p.log")"
grep -q 'channels of layer 9 (dense(32)): 32 -> 16' "$d/p.log" || fail "plan dense: $(cat "$d/p.log")"
# conv 4*9+4, bn 8, conv 8*4*9+8, dense 16*392+16, dense 10*16+10
"$bin" info "$d/p.cnd" > "$d/info.log"
grep -q 'total: 6802 parameters' "$d/info.log" || fail "info: $(cat "$d/info.log")"
grep -q 'conv2d(4,3,pad=1) batchnorm relu maxpool(2) conv2d(8,3,pad=1)' "$d/info.log" || fail "spec"
grep -q 'pruned_from' "$d/info.log" || fail "metadata"
[ "$(stat -c %s "$d/p.cnd")" -lt "$(( $(stat -c %s "$d/t.cnd") / 3 ))" ] || fail "file not smaller"
acc=$(sed -n 's/^  test accuracy fine-tuned \([0-9.]*\)$/\1/p' "$d/p.log")
[ -n "$acc" ] || fail "no fine-tuned accuracy: $(cat "$d/p.log")"
"$bin" eval "$d/p.cnd" | grep -q "accuracy $acc" || fail "eval disagrees with prune ($acc)"
python3 - "$d/p.log" <<'PY' || fail "fine-tune did not help: $(cat "$d/p.log")"
import re, sys
t = open(sys.argv[1]).read()
a = {k: float(v) for k, v in re.findall(r"test accuracy (\w[\w-]*) +([0-9.]+)", t)}
assert a["fine-tuned"] > a["pruned"] and a["fine-tuned"] > 0.5, a
PY

# A MAC target with the Taylor score, and a byte target as JSON.
"$bin" prune "$d/t.cnd" --out "$d/pm.cnd" --target-macs 100000 --score taylor --calib 256 \
  --subset 1000 --threads 1 > "$d/pm.log"
macs=$(sed -n 's/.*MACs [0-9]* -> \([0-9]*\),.*/\1/p' "$d/pm.log")
[ -n "$macs" ] && [ "$macs" -le 100000 ] || fail "MAC target: $(cat "$d/pm.log")"
"$bin" prune "$d/t.cnd" --out "$d/pb.cnd" --target-bytes 40000 --json > "$d/pb.json"
python3 - "$d/pb.json" "$d/pb.cnd" <<'PY' || fail "byte target: $(cat "$d/pb.json")"
import json, os, sys
r = json.load(open(sys.argv[1]))
assert r["bytes_after"] <= 40000 and r["bytes_after"] == os.path.getsize(sys.argv[2]), r
assert r["params_after"] < r["params_before"] and r["macs_after"] < r["macs_before"], r
assert 0 < r["ratio"] < 1 and r["accuracy_finetuned"] is None, r
PY
# without test data the original's recorded accuracy is not carried over to the pruned model
! "$bin" info "$d/pb.cnd" | grep -q test_accuracy || fail "stale test_accuracy in pb.cnd"

# A student that starts from the pruned model's architecture and weights.
"$bin" distill --teacher "$d/t.cnd" --init "$d/p.cnd" --epochs 1 --subset 2000 --threads 1 \
  --out "$d/s.cnd" > "$d/s.log"
grep -q 'distilling into conv2d(4,3,pad=1) batchnorm relu' "$d/s.log" || fail "init: $(cat "$d/s.log")"
"$bin" info "$d/s.cnd" | grep -q "init_from .*p.cnd" || fail "init metadata"

# Errors: 2 for bad usage, 1 for bad input, messages naming what is wrong.
set +e
"$bin" prune "$d/t.cnd" --out "$d/x.cnd" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'exactly one of --ratio' "$d/err" || fail "no target: rc $rc $(cat "$d/err")"
"$bin" prune "$d/t.cnd" --out "$d/x.cnd" --ratio 0.5 --target-macs 5 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'exactly one of --ratio' "$d/err" || fail "two targets: rc $rc"
"$bin" prune "$d/t.cnd" --out "$d/x.cnd" --ratio 1.5 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'ratio' "$d/err" || fail "ratio range: rc $rc $(cat "$d/err")"
"$bin" prune "$d/t.cnd" --out "$d/x.cnd" --ratio 0.5 --score l3 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'expected l1, l2 or taylor' "$d/err" || fail "score: rc $rc"
"$bin" prune "$d/t.cnd" --out "$d/x.cnd" --target-macs 10 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'cannot prune to 10 MACs' "$d/err" || fail "unreachable: rc $rc $(cat "$d/err")"
head -c 200 "$d/t.cnd" > "$d/trunc.cnd"
"$bin" prune "$d/trunc.cnd" --out "$d/x.cnd" --ratio 0.5 2> "$d/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'trunc.cnd' "$d/err" || fail "truncated: rc $rc $(cat "$d/err")"
"$bin" train --arch "x=conv2d(4,1) @input conv2d(4,1) concat(@x) c=relu @input conv2d(8,1) add(@c) gap dense(10)" \
  --epochs 1 --subset 200 --threads 1 --out "$d/g.cnd" > /dev/null
"$bin" prune "$d/g.cnd" --out "$d/x.cnd" --ratio 0.5 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'layer 6 (add) cannot be pruned' "$d/err" || fail "graph refusal: rc $rc $(cat "$d/err")"
"$bin" distill --teacher "$d/t.cnd" --init "$d/p.cnd" --arch "flatten dense(10)" --out "$d/x.cnd" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'exactly one of --arch, --student or --init' "$d/err" || fail "init+arch: rc $rc"
set -e
[ ! -e "$d/x.cnd" ] || fail "a refused command wrote its output"
echo "cli_prune ok"
