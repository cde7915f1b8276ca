#!/usr/bin/env bash
# latency_fit.sh: fits the integer runtime's latency cost model for this host (compress/
# latency.h, `condenser predict`). Generates N random Fashion-MNIST chains (1-3 conv2d of
# 4-64 channels, kernels 1/3/5, strides 1/2, maxpool/avgpool/none, 0-2 hidden dense of 16-256
# units, or plain MLPs), trains each for one short epoch (the weights' values do not change the
# latency), quantizes it to int8 (`condenser quantize`), measures its batch-1 latency with
# `condenser bench --json` (the lowest p50 of REPEATS runs of 5000 calls: the machine is shared),
# and fits the cost model on 3 of every 4 models, holding out the 4th
# (`condenser predict --fit`). Writes WORKDIR/meas.csv and WORKDIR/x86.costs; copy the latter
# to compress/latency_x86.costs to make it the built-in one.
#
# usage: bench/latency_fit.sh CONDENSER [WORKDIR [N [SEED]]]   (a Release build's condenser)
set -euo pipefail
bin=${1:?usage: latency_fit.sh CONDENSER [WORKDIR [N [SEED]]]}
d=${2:-$(mktemp -d)}
n=${3:-48}
seed=${4:-1}
REPEATS=${REPEATS:-3}
mkdir -p "$d"
python3 - "$n" "$seed" > "$d/specs.txt" <<'PY'
import random, sys
n, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
for i in range(n):
    toks, hw = [], 28
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        k = rng.choice([1, 3, 3, 5])
        s = rng.choice([1, 1, 2]) if hw >= 8 else 1
        pad = k // 2
        toks.append("conv2d(%d,%d%s,pad=%d) relu" % (rng.choice([4, 8, 16, 24, 32, 48, 64]), k,
                                                     ",stride=2" if s == 2 else "", pad))
        hw = (hw + 2 * pad - k) // s + 1
        pool = rng.choice(["", "maxpool(2)", "avgpool(2)"]) if hw >= 4 else ""
        if pool:
            toks.append(pool)
            hw //= 2
    toks.append("flatten")
    for _ in range(rng.choice([0, 1, 1, 2])):
        toks.append("dense(%d) relu" % rng.choice([16, 32, 64, 128, 256]))
    toks.append("dense(10)")
    print(" ".join(toks))
PY
echo "model,latency_us,heldout" > "$d/meas.csv"
i=0
while IFS= read -r spec; do
  m="$d/m$i"
  "$bin" train --arch "$spec" --epochs 1 --subset 256 --threads 1 --no-checkpoint --out "$m.cnd" > /dev/null
  "$bin" quantize "$m.cnd" --out "$m.cndq" --subset 1000 --calib 200 --no-report > /dev/null
  best=
  for _ in $(seq "$REPEATS"); do
    p50=$("$bin" bench "$m.cndq" --iters 5000 --batch 16 --json |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["p50_us"])')
    best=$(python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" $p50 $best)
  done
  echo "m$i.cnd,$best,$(( i % 4 == 3 ))" >> "$d/meas.csv"
  echo "model $i: $best us  $spec"
  i=$((i + 1))
done < "$d/specs.txt"
"$bin" predict --fit "$d/meas.csv" --device x86 --out "$d/x86.costs"
