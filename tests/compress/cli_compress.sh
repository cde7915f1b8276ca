#!/usr/bin/env bash
# cli_compress.sh: the compress/ subcommands end to end as a user runs them: train, info, eval
# (text and JSON), distill with and without augmentation, and their error paths (exit codes and
# messages). Skipped (77) when Debian's Fashion-MNIST is not installed.
set -euo pipefail
bin=${CND_BIN:?CND_BIN must point at the condenser binary}
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || { echo "no Fashion-MNIST"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin" train --arch "flatten dense(32) relu dense(10)" --epochs 1 --subset 3000 --threads 1 \
  --out "$d/t.cnd" > "$d/train.log"
grep -q '^test accuracy 0\.[6-9]' "$d/train.log" || fail "train accuracy: $(cat "$d/train.log")"
"$bin" info "$d/t.cnd" > "$d/info.log"
grep -q 'total: 25450 parameters' "$d/info.log" || fail "info: $(cat "$d/info.log")"
grep -q 'train_samples *3000' "$d/info.log" || fail "info metadata"
"$bin" eval "$d/t.cnd" --json > "$d/eval.json"
python3 - "$d/eval.json" <<'PY' || fail "eval json"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["samples"] == 10000 and 0.6 < r["accuracy"] <= 1 and len(r["per_class"]) == 10, r
assert abs(sum(c["samples"] for c in r["per_class"]) - 10000) == 0
PY
# The accuracy recorded at training equals what eval measures on the same test set.
acc_train=$(sed -n 's/^test accuracy \([0-9.]*\).*/\1/p' "$d/train.log")
"$bin" eval "$d/t.cnd" | grep -q "accuracy $acc_train" || fail "eval disagrees with train ($acc_train)"

"$bin" distill --teacher "$d/t.cnd" --arch "flatten dense(16) relu dense(10)" --epochs 1 \
  --subset 2000 --threads 1 --out "$d/s.cnd" > "$d/distill.log"
grep -q 'cached for all epochs' "$d/distill.log" || fail "distill cache"
grep -q '^test accuracy 0\.[5-9]' "$d/distill.log" || fail "distill accuracy"
"$bin" distill --teacher "$d/t.cnd" --arch "flatten dense(16) relu dense(10)" --epochs 1 \
  --subset 1000 --threads 1 --augment shift --out "$d/s2.cnd" > "$d/distill2.log"
grep -q 'scores every augmented batch' "$d/distill2.log" || fail "online teacher"
"$bin" info "$d/s2.cnd" | grep -q 'distilled_from' || fail "distill metadata"

# A killed training run resumes from FILE.ckpt. Without --resume, or with other settings, the
# checkpoint is refused and kept; the resumed run ends with the model of an uninterrupted one
# (test_train checks the bits) and removes the checkpoint. Same for distill.
[ ! -e "$d/t.cnd.ckpt" ] || fail "checkpoint left after a finished run"
kill_resume() { # NAME SUBCOMMAND ARGS...
  local name=$1; shift
  "$bin" "$@" --out "$d/$name-full.cnd" > "$d/$name-full.log"
  "$bin" "$@" --out "$d/$name.cnd" > "$d/$name.log" 2>&1 &
  local pid=$! rc
  for _ in $(seq 1000); do [ -e "$d/$name.cnd.ckpt" ] && break; sleep 0.01; done
  kill -9 $pid
  wait $pid 2> /dev/null || true
  [ -e "$d/$name.cnd.ckpt" ] && [ ! -e "$d/$name.cnd" ] || fail "$name: no checkpoint after a kill"
  set +e
  "$bin" "$@" --out "$d/$name.cnd" 2> "$d/err"; rc=$?
  [ $rc -eq 2 ] && grep -q -- "$name.cnd.ckpt exists.*--resume" "$d/err" || fail "$name: no --resume: rc $rc $(cat "$d/err")"
  "$bin" "$@" --lr 0.01 --resume --out "$d/$name.cnd" 2> "$d/err"; rc=$?
  [ $rc -eq 2 ] && grep -q 'lr=0.001 (this run: 0.01)' "$d/err" || fail "$name: other settings: rc $rc $(cat "$d/err")"
  set -e
  "$bin" "$@" --resume --out "$d/$name.cnd" > "$d/$name-2.log"
  grep -q "resuming from .*$name.cnd.ckpt: [0-9]* of 40 epochs done" "$d/$name-2.log" ||
    fail "$name: resume: $(cat "$d/$name-2.log")"
  [ ! -e "$d/$name.cnd.ckpt" ] || fail "$name: checkpoint left after the resumed run"
  [ "$(grep '^test accuracy' "$d/$name-full.log")" = "$(grep '^test accuracy' "$d/$name-2.log")" ] ||
    fail "$name: resumed run differs: $(grep -h '^test accuracy' "$d/$name-full.log" "$d/$name-2.log")"
}
kill_resume tr train --arch "flatten dense(32) relu dense(10)" --epochs 40 --subset 3000 --threads 1
kill_resume ds distill --teacher "$d/t.cnd" --arch "flatten dense(16) relu dense(10)" --epochs 40 \
  --subset 2000 --threads 1

# Errors: exit code 2 for bad usage, 1 for bad input, messages naming what is wrong.
set +e
"$bin" train --arch "dense(10" --out "$d/x.cnd" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'spec position 9' "$d/err" || fail "bad spec: rc $rc $(cat "$d/err")"
"$bin" train --arch "dense(10)" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q -- '--out is required' "$d/err" || fail "missing --out"
head -c 100 "$d/t.cnd" > "$d/trunc.cnd"
"$bin" eval "$d/trunc.cnd" 2> "$d/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'trunc.cnd' "$d/err" || fail "truncated model: rc $rc $(cat "$d/err")"
"$bin" distill --teacher "$d/t.cnd" --arch "flatten dense(3)" --out "$d/y.cnd" --subset 100 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'must match' "$d/err" || fail "class mismatch: rc $rc $(cat "$d/err")"
"$bin" bogus 2> /dev/null; [ $? -eq 2 ] || fail "unknown command"
set -e
[ ! -e "$d/x.cnd" ] && [ ! -e "$d/y.cnd" ] || fail "a failed command wrote a file"
echo "cli_compress: ok"
