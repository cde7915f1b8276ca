#!/usr/bin/env bash
# graph_int8.sh: batch-1 int8 latency of the MobileNetV2-style graph student (docs/benchmarks.md)
# in Condenser's integer runtime (`condenser bench X.cndq`, avx512vnni / avx2 kernels as the CPU
# has them) and in PyTorch's int8 engines (bench/torch_graph_int8.py: FX-mode post-training
# quantization, qnnpack and onednn), side by side: the two are interleaved REPEATS times and
# the medians of the per-round p50s are compared (issue 16's target: at least 5x faster than
# PyTorch's fastest int8 engine). The student is trained for one epoch over 6,000 images and
# quantized (PTQ) first; latency does not depend on how well it is trained.
#
# usage: bench/graph_int8.sh CONDENSER [ITERS [REPEATS]]   (a Release build's condenser)
set -euo pipefail
bin=${1:?usage: graph_int8.sh CONDENSER [ITERS [REPEATS]]}
iters=${2:-2000}
reps=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
spec="conv2d(16,3,pad=1) batchnorm relu6 mbconv(1,16,1) mbconv(4,24,2) mbconv(4,24,1) mbconv(4,40,2) mbconv(4,40,1) conv2d(128,1) batchnorm relu6 gap dense(10)"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$bin" train --arch "$spec" --subset 6000 --epochs 1 --threads 2 --no-checkpoint \
  --out "$d/mb.cnd" > "$d/train.log" 2>&1
"$bin" quantize "$d/mb.cnd" --out "$d/mb.cndq" --calib 300 --report-samples 300 \
  > "$d/quant.log" 2>&1
grep '^wrote' "$d/quant.log"
declare -A runs
for r in $(seq "$reps"); do
  for k in auto avx2; do
    p=$("$bin" bench "$d/mb.cndq" --json --iters "$iters" --kernels "$k" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.1f %s" % (j["p50_us"], j["engine"]))')
    echo "run $r condenser int8 $k: p50 ${p% *} us (${p#* } kernels)"
    runs[condenser-$k]+="${p% *} "
  done
  /usr/bin/python3 "$here/torch_graph_int8.py" --iters "$iters" --rounds 1 > "$d/torch.json"
  while read -r line; do
    set -- $(echo "$line" | python3 -c 'import json,sys; j=json.load(sys.stdin)
print(j["engine"], "%.1f" % j.get("p50_us", -1), "%.3f" % j.get("top1_agreement_with_float", 1))')
    echo "run $r pytorch $1: p50 $2 us (top-1 agreement with its float model $3)"
    runs[$1]+="$2 "
    runs[$1-agree]=$3
  done < "$d/torch.json"
done
median() { echo "$@" | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in condenser-auto condenser-avx2 torch-float32 torch-int8-qnnpack torch-int8-onednn; do
  [ -n "${runs[$k]:-}" ] && echo "median $k: $(median ${runs[$k]}) us"
done
# PyTorch's fastest int8 engine among those whose int8 model agrees with its float model (an
# engine that mispredicts is not a usable engine), then the ratio
fast=
for k in torch-int8-qnnpack torch-int8-onednn; do
  [ -n "${runs[$k]:-}" ] || continue
  awk -v a="${runs[$k-agree]}" 'BEGIN {exit !(a >= 0.9)}' || { echo "$k: top-1 agreement ${runs[$k-agree]}, not counted"; continue; }
  m=$(median ${runs[$k]})
  if [ -z "$fast" ] || awk -v m="$m" -v f="$fast" 'BEGIN {exit !(m < f)}'; then fast=$m; fk=$k; fi
done
c=$(median ${runs[condenser-auto]})
[ -n "$fast" ] && echo "fastest pytorch int8 ($fk) / condenser int8: $fast / $c = $(awk -v c="$c" -v f="$fast" 'BEGIN {printf "%.2f", f / c}')x"
