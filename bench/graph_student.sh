#!/usr/bin/env bash
# graph_student.sh: training throughput of the MobileNetV2-style graph student (docs/layers.md,
# docs/benchmarks.md) in Condenser and in PyTorch (bench/torch_train.py --arch mbnet: the same
# architecture, batch 64, Adam, cosine schedule, one epoch over the first N Fashion-MNIST
# training images), 1 and 2 threads each, the runs interleaved REPEATS times; prints each run,
# the medians of samples/s and the ratio of the best medians (issue 16's target: at least 2x).
#
# usage: bench/graph_student.sh CONDENSER [N [REPEATS]]   (a Release build's condenser)
set -euo pipefail
bin=${1:?usage: graph_student.sh CONDENSER [N [REPEATS]]}
n=${2:-3000}
reps=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
spec="conv2d(16,3,pad=1) batchnorm relu6 mbconv(1,16,1) mbconv(4,24,2) mbconv(4,24,1) mbconv(4,40,2) mbconv(4,40,1) conv2d(128,1) batchnorm relu6 gap dense(10)"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
declare -A runs
for r in $(seq "$reps"); do
  for t in 1 2; do
    sps=$("$bin" train --arch "$spec" --subset "$n" --epochs 1 --batch 64 --threads "$t" \
            --no-checkpoint --out "$d/s.cnd" 2>&1 | sed -n 's/^trained in .*(\([0-9.]*\) samples\/s)/\1/p')
    echo "run $r condenser threads $t: $sps samples/s"
    runs[condenser-$t]+="$sps "
    sps=$(OPENBLAS_NUM_THREADS=$t /usr/bin/python3 "$here/torch_train.py" --arch mbnet --subset "$n" \
            --test 500 --epochs 1 --batch 64 --threads "$t" |
          python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["samples_per_s"])')
    echo "run $r pytorch   threads $t: $sps samples/s"
    runs[pytorch-$t]+="$sps "
  done
done
median() { echo "$@" | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for k in condenser-1 condenser-2 pytorch-1 pytorch-2; do
  echo "median $k: $(median ${runs[$k]}) samples/s"
done
# the issue's ratio: the best thread setting of each, by median
best() { for t in 1 2; do median ${runs[$1-$t]}; done | sort -g | tail -1; }
c=$(best condenser) p=$(best pytorch)
echo "best condenser / best pytorch: $c / $p = $(awk -v c="$c" -v p="$p" 'BEGIN {printf "%.2f", c / p}')x"
