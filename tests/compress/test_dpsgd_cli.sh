#!/usr/bin/env bash
# test_dpsgd_cli.sh: DP-SGD from the command line (docs/privacy.md): train and distill with
# --dp-noise/--dp-epsilon print the epsilon the accountant (`condenser privacy`) gives for the
# same sampling rate, noise and steps, record it in the model's metadata, and learn; bad DP
# options and architectures are refused with a message naming the fault. QAT under DP
# (quantize --qat-epochs with --dp-*): the total it prints composes the model's DP training with
# the QAT steps as `condenser privacy --compose` does from the artifact's dp_runs, stays within
# --dp-epsilon, and the int8 model learns; what it cannot promise is refused. Skipped (77)
# without Debian's Fashion-MNIST.
set -euo pipefail
bin=${CND_BIN:?CND_BIN must point at the condenser binary}
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || { echo "no Fashion-MNIST"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
arch="conv2d(4,5) tanh maxpool(2) flatten dense(10)"

# --dp-noise: the epsilon printed and stored is the accountant's for 3 epochs of ceil(2000/200)
"$bin" train --arch "$arch" --subset 2000 --epochs 3 --batch 200 --optimizer sgd --lr 2 \
  --dp-noise 1.2 --dp-clip 0.5 --dp-delta 1e-4 --threads 1 --no-checkpoint --out "$d/n.cnd" \
  > "$d/n.log" || fail "train --dp-noise: $(cat "$d/n.log")"
want=$("$bin" privacy --samples 2000 --batch 200 --epochs 3 --noise 1.2 --delta 1e-4 --json |
  python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["epsilon"])')
grep -q "^privacy: (epsilon $want, delta 0.0001)-DP .*noise multiplier 1.2, clip 0.5, 30 steps" \
  "$d/n.log" || fail "privacy line, want epsilon $want: $(cat "$d/n.log")"
grep -q "clipped [0-9]*% (mean norm" "$d/n.log" || fail "epoch line has no clipping figures"
grep -q '^test accuracy 0\.[4-9]' "$d/n.log" || fail "DP training did not learn: $(cat "$d/n.log")"
"$bin" info "$d/n.cnd" > "$d/info.log"
grep -q "dp_epsilon *$want" "$d/info.log" || fail "metadata: $(cat "$d/info.log")"
grep -q "dp_steps *30" "$d/info.log" || fail "metadata steps"
# a tanh model exports to ONNX (Tanh) and our ONNX engine gives the same accuracy
"$bin" export "$d/n.cnd" --onnx --out "$d/n.onnx" > "$d/x.log"
prep=$(sed -n 's/.*normalised as (x - mean) \/ std, mean \([0-9.e+-]*\), std \([0-9.e+-]*\).*/mean=\1 std=\2/p' "$d/x.log")
a1=$("$bin" eval "$d/n.cnd" | sed -n 's/.* accuracy \([0-9.]*\) .*/\1/p')
a2=$("$bin" eval "$d/n.onnx" --preprocess "$prep" | sed -n 's/.* accuracy \([0-9.]*\) .*/\1/p')
[ -n "$a1" ] && [ "$a1" = "$a2" ] || fail "ONNX export of tanh: $a1 vs $a2 ($prep)"

# --dp-epsilon: the noise is solved so that the run ends at (just below) the target
"$bin" distill --teacher "$d/n.cnd" --arch "$arch" --subset 2000 --epochs 2 --batch 200 \
  --optimizer sgd --lr 2 --dp-epsilon 2 --threads 1 --no-checkpoint --out "$d/e.cnd" \
  > "$d/e.log" || fail "distill --dp-epsilon: $(cat "$d/e.log")"
python3 - "$d/e.log" <<'PY' || fail "solved epsilon: $(cat "$d/e.log")"
import re, sys
t = open(sys.argv[1]).read()
e = float(re.search(r"^privacy: \(epsilon ([0-9.]+), delta 1e-05\)", t, re.M).group(1))
assert 1.999 <= e <= 2.0, e
assert "(solved)" in t
PY

# refusals, each naming what is wrong
expect_err() { # expect_err PATTERN ARGS...: the command fails and stderr matches PATTERN
  local pat=$1; shift
  if "$bin" "$@" > "$d/r.out" 2> "$d/r.err"; then fail "accepted: $*"; fi
  grep -q "$pat" "$d/r.err" || fail "wrong message for $*: $(cat "$d/r.err")"
}
common=(--subset 500 --epochs 1 --batch 50 --threads 1 --no-checkpoint --out "$d/x.cnd")
expect_err "layer 2 is batchnorm" train --arch "conv2d(4,3) batchnorm relu flatten dense(10)" \
  --dp-noise 1 "${common[@]}"
expect_err "not both" train --arch "$arch" --dp-noise 1 --dp-epsilon 3 "${common[@]}"
expect_err "above 1/N" train --arch "$arch" --dp-noise 1 --dp-delta 0.01 "${common[@]}"
expect_err "need --dp-epsilon or --dp-noise" train --arch "$arch" --dp-clip 1 "${common[@]}"
expect_err "above the 500 training records" train --arch "$arch" --dp-noise 1 --subset 500 \
  --epochs 1 --batch 600 --threads 1 --no-checkpoint --out "$d/x.cnd"
expect_err "no noise multiplier up to 1e4" privacy --sampling-rate 1 --steps 100000 \
  --epsilon 0.001 --delta 1e-10

# a tanh model quantizes (tanh as a table, its input clamped to +-4) and keeps its accuracy
"$bin" quantize "$d/n.cnd" --out "$d/n.cndq" > "$d/q.log" 2>&1 || fail "quantize tanh: $(cat "$d/q.log")"
grep -q "minmax\[-4,4\]" "$d/q.log" || fail "the conv2d before tanh is not clamped to +-4: $(cat "$d/q.log")"
python3 - "$d/q.log" <<'PY' || fail "int8 tanh model: $(cat "$d/q.log")"
import re, sys
t = open(sys.argv[1]).read()
f, q = map(float, re.search(r"test accuracy: float ([0-9.]+)  integer ([0-9.]+)", t).groups())
assert abs(f - q) <= 0.02, (f, q)
snr = float(re.search(r"^ +2 +tanh +([0-9.]+)", t, re.M).group(1))
assert snr >= 25, snr
PY

# QAT under DP: --dp-epsilon is the total over the model's DP training (n.cnd: 30 steps at noise
# 1.2, delta 1e-4, on a 2000-record subset) and the QAT steps; ranges from public samples
pub=(--calib-data "fmnist" --calib 200)
total=$(python3 -c "print($want + 1)")
"$bin" quantize "$d/n.cnd" --out "$d/dq.cndq" --subset 2000 --qat-epochs 2 --batch 200 \
  --optimizer sgd --lr 0.5 --dp-epsilon "$total" --dp-clip 0.5 "${pub[@]}" --threads 1 \
  --no-report > "$d/dq.log" 2>&1 || fail "quantize DP QAT: $(cat "$d/dq.log")"
"$bin" info "$d/dq.cndq" > "$d/dqi.log"
runs=$(sed -n 's/^.*[[:space:]]dp_runs[[:space:]]*//p' "$d/dqi.log")
composed=$("$bin" privacy --compose "$runs" --delta 1e-4 --json |
  python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["epsilon"])')
python3 - "$d/dq.log" "$total" "$composed" "$runs" <<'PY' || fail "DP QAT: $(cat "$d/dq.log") runs $runs"
import re, sys
t, total, composed, runs = open(sys.argv[1]).read(), float(sys.argv[2]), sys.argv[3], sys.argv[4]
m = re.search(r"^privacy: \(epsilon ([0-9.]+), delta 0.0001\)-DP for each training record, the "
              r"model's DP training and the QAT steps composed", t, re.M)
assert m and m.group(1) == composed, (m and m.group(1), composed)
assert total - 0.002 <= float(composed) <= total, (composed, total)
assert "(solved)" in t and "composed with the model's DP training (sampling rate 0.1, noise 1.2, 30 steps)" in t
r = runs.split(",")
assert len(r) == 2 and r[0] == "0.1:1.2:30" and r[1].startswith("0.1:") and r[1].endswith(":20"), runs
assert "no observers under DP" in t
f, q = map(float, re.search(r"test accuracy: float ([0-9.]+)  integer ([0-9.]+)", t).groups())
assert q >= 0.4, q
PY
grep -q "calib_data *fmnist" "$d/dqi.log" || fail "calib_data metadata: $(cat "$d/dqi.log")"
grep -q "qat_dp_clip *0.5" "$d/dqi.log" || fail "qat_dp metadata: $(cat "$d/dqi.log")"
# --dp-noise: the QAT steps alone spend what the accountant gives for them
"$bin" quantize "$d/n.cnd" --out "$d/dn.cndq" --subset 2000 --qat-epochs 1 --batch 200 \
  --dp-noise 2 "${pub[@]}" --threads 1 --no-report > "$d/dn.log" 2>&1 ||
  fail "quantize --dp-noise: $(cat "$d/dn.log")"
alone=$("$bin" privacy --samples 2000 --batch 200 --epochs 1 --noise 2 --delta 1e-4 --json |
  python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["epsilon"])')
grep -q "noise multiplier 2: the QAT steps alone (epsilon $alone, delta 0.0001)" "$d/dn.log" ||
  fail "QAT alone, want $alone: $(cat "$d/dn.log")"
# a DP model fine-tuned without DP keeps no guarantee
"$bin" quantize "$d/n.cnd" --out "$d/np.cndq" --subset 500 --qat-epochs 1 --threads 1 \
  --no-report > "$d/np.log" 2>&1 || fail "quantize non-private QAT: $(cat "$d/np.log")"
"$bin" info "$d/np.cndq" | grep -q "dp_epsilon *inf" || fail "non-private QAT kept dp_epsilon"
qcommon=(--out "$d/r.cndq" --subset 500 --batch 50 --threads 1 --no-report)
expect_err "give --qat-epochs N" quantize "$d/n.cnd" --dp-epsilon 5 "${pub[@]}" "${qcommon[@]}"
expect_err "needs --calib-data" quantize "$d/n.cnd" --qat-epochs 1 --dp-noise 1 "${qcommon[@]}"
expect_err "cannot be met" quantize "$d/n.cnd" --qat-epochs 1 --dp-epsilon 0.1 "${pub[@]}" \
  "${qcommon[@]}"
expect_err "not both" quantize "$d/n.cnd" --qat-epochs 1 --dp-epsilon 9 --dp-noise 1 "${pub[@]}" \
  "${qcommon[@]}"
expect_err "above 1/N" quantize "$d/n.cnd" --qat-epochs 1 --dp-noise 1 --dp-delta 0.01 \
  "${pub[@]}" "${qcommon[@]}"
expect_err "QAT runs adam or sgd" quantize "$d/n.cnd" --qat-epochs 1 --optimizer adamw \
  "${qcommon[@]}"
echo "test_dpsgd_cli: ok"
