#!/usr/bin/env bash
# cli_predict.sh: `condenser predict` as a user runs it: the built-in x86 and arm-a7-qemu cost
# models on a chain and on a graph (residual add, depthwise conv, concat), a cost file of our
# own whose prediction is checked against the features it reports (no timing here:
# bench/latency_fit.sh measures), `--fit` on a few rows, and the refusals (unknown class, a
# malformed cost file, one for another class or kernel set, too few measurements), each naming
# what is wrong and writing nothing. Skipped (77) when Debian's Fashion-MNIST is not installed.
set -euo pipefail
bin=${CND_BIN:?CND_BIN must point at the condenser binary}
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || { echo "no Fashion-MNIST"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$bin" train --arch "conv2d(4,3,pad=1) batchnorm relu maxpool(2) conv2d(8,3,pad=1) relu maxpool(2) flatten dense(16) relu dense(10)" \
  --epochs 1 --subset 200 --threads 1 --out "$d/t.cnd" > /dev/null
"$bin" train --arch "x=conv2d(8,3,stride=2,pad=1) relu6 dwconv(3,pad=1) relu6 conv2d(8,1) add(@x) y=conv2d(4,1) @x conv2d(4,1) concat(@y) hardswish gap dense(10)" \
  --epochs 1 --subset 200 --threads 1 --out "$d/g.cnd" > /dev/null

for dev in x86 arm-a7-qemu; do
  for m in t g; do
    "$bin" predict "$d/$m.cnd" --device "$dev" --json > "$d/$m-$dev.json" || fail "predict $m on $dev"
  done
done
python3 - "$d" <<'PY' || fail "predict json"
import json, os, sys
d = sys.argv[1]
for dev in ("x86", "arm-a7-qemu"):
    for m in ("t", "g"):
        a = json.load(open(os.path.join(d, "%s-%s.json" % (m, dev))))
        assert a["device"] == dev and a["predicted_us"] > 0 and a["heldout_models"] > 0, a
        assert 0 <= a["heldout_median_error"] <= a["heldout_max_error"], a
        f = a["features"]
        pre = "x_" if dev == "x86" else "r_"
        assert all(k.startswith(pre) or "_" not in k or k in ("avg_in", "gconv_macs", "gconv_out")
                   for k in f), f  # only the class's own kernel set
        if m == "g":  # the add, the depthwise conv, the concat are costed
            assert f[pre + "add"] == 8 * 14 * 14 and f["concat"] == 8 * 14 * 14, f
            assert f[pre + "dw_out"] == 8 * 14 * 14, f
        else:  # conv 4x3x3 over 28x28x1, conv 8x3x3 over 14x14x4
            assert f.get("r_conv_macs", 4 * 9 * 784 + 8 * 36 * 196) == 4 * 9 * 784 + 8 * 36 * 196, f
PY
"$bin" predict "$d/g.cnd" --device arm-a7-qemu | grep -q 'cost model error on [0-9]* held-out models: median' ||
  fail "predict text"

# A cost file of our own (reference kernels): the prediction is the dot product of its
# coefficients with the features printed.
{
  printf '# test\ndevice mine\nkernels ref\n'
  for k in one layers avg_in elt concat gconv_macs gconv_out r_conv_macs r_conv_patch r_conv_out r_conv_pix \
           r_conv_edge r_conv_big r_dense_macs r_dense_big r_dense_out r_dw_macs r_dw_out r_maxpool_in r_add; do
    printf 'coef %s %s\n' "$k" "0.$(( ${#k} % 7 + 1 ))"
  done
  printf 'heldout_median 0.05\nheldout_max 0.1\ntrain 9\nheldout 3\n'
} > "$d/my.costs"
"$bin" predict "$d/g.cnd" --device mine --costs "$d/my.costs" --json > "$d/my.json"
python3 - "$d/my.json" "$d/my.costs" <<'PY' || fail "own costs: $(cat "$d/my.json")"
import json, sys
a = json.load(open(sys.argv[1]))
coef = {l.split()[1]: float(l.split()[2]) for l in open(sys.argv[2]) if l.startswith("coef ")}
want = sum(coef[k] * v for k, v in a["features"].items())
assert set(a["features"]) == set(coef), (a, coef)
assert abs(a["predicted_us"] - want) < 1e-6 * want and a["heldout_median_error"] == 0.05, (a, want)
PY

set +e
"$bin" predict "$d/t.cnd" --device cortex-m4 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'no cost model for device class cortex-m4 (built in: x86, arm-a7-qemu' "$d/err" ||
  fail "device: rc $rc $(cat "$d/err")"
"$bin" predict "$d/t.cnd" --costs "$d/my.costs" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'my.costs is a cost model for mine, not x86' "$d/err" || fail "class: rc $rc $(cat "$d/err")"
sed 's/^coef r_add .*/coef r_add x/' "$d/my.costs" > "$d/bad.costs"
"$bin" predict "$d/t.cnd" --device mine --costs "$d/bad.costs" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'bad.costs line 23: not understood' "$d/err" || fail "bad costs: rc $rc $(cat "$d/err")"
sed 's/^coef r_add /coef x_add /' "$d/my.costs" > "$d/mixed.costs"
"$bin" predict "$d/t.cnd" --device mine --costs "$d/mixed.costs" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'mixed.costs: coefficient x_add is not a feature for kernels ref' "$d/err" ||
  fail "mixed costs: rc $rc $(cat "$d/err")"
printf 'model,latency_us,heldout\nt.cnd,10,0\ng.cnd,20,0\n' > "$d/meas.csv"
"$bin" predict --fit "$d/meas.csv" --device mine --kernels ref --out "$d/x.costs" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q '2 training measurements; the fit needs at least 20' "$d/err" || fail "fit: rc $rc $(cat "$d/err")"
[ ! -e "$d/x.costs" ] || fail "a refused fit wrote its output"
"$bin" predict --fit "$d/meas.csv" --kernels neon --out "$d/x.costs" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q "kernels: 'neon' is not x86 or ref" "$d/err" || fail "kernels: rc $rc $(cat "$d/err")"
printf 'model,latency_us,heldout\nt.cnd,-1,0\n' > "$d/neg.csv"
"$bin" predict --fit "$d/neg.csv" --out "$d/x.costs" 2> "$d/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'neg.csv line 2: bad latency' "$d/err" || fail "negative: rc $rc $(cat "$d/err")"
[ ! -e "$d/x.costs" ] || fail "a refused fit wrote its output"
set -e

# A fit that works: 20 rows of the two models with latencies that a cost model can match.
{
  echo "model,latency_us,heldout"
  for i in $(seq 0 19); do
    echo "t.cnd,$(( 10 + i % 3 )),$(( i % 4 == 3 ))"
    echo "g.cnd,$(( 20 + i % 5 )),$(( i % 4 == 3 ))"
  done
} > "$d/ok.csv"
"$bin" predict --fit "$d/ok.csv" --device mine --kernels ref --out "$d/ok.costs" > "$d/fit.log" || fail "fit: $(cat "$d/fit.log")"
grep -q 'fitted on 30 models; held-out error median' "$d/fit.log" || fail "fit log: $(cat "$d/fit.log")"
"$bin" predict "$d/t.cnd" --device mine --costs "$d/ok.costs" > /dev/null || fail "fitted costs do not load"
echo "1 passed, 0 failed"
