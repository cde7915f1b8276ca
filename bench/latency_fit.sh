#!/usr/bin/env bash
# latency_fit.sh: measures and fits the integer runtime's latency cost models (compress/latency.h,
# `condenser predict`) for the x86 host class and the ARM class under qemu-user.
#
# 1. models: N random Fashion-MNIST models from bench/latency_models.py (conv chains, MLPs,
#    MobileNetV2-style mbconv students, ResNet-style resblock students, concat / grouped /
#    depthwise graphs), each trained one short epoch (the weights' values do not change the
#    latency) and quantized to int8 (`condenser quantize`); models the runtime refuses are listed
#    in WORKDIR/skipped.txt.
# 2. x86: batch-1 latency with `condenser bench X.cndq --json` pinned to CPU $CPU (taskset): the
#    lowest p50 over $ROUNDS runs, each run sized to ~0.15 s of calls (at least 200, at most
#    20000), so small models get many calls; the whole set is measured $PASSES times, at different
#    moments, into x86_pass<P>.csv.
# 3. arm: bench/rt_time.c built for armhf (arm-linux-gnueabihf-gcc -O2 -mcpu=cortex-a7 -static,
#    the reference kernels: the runtime has no ARM fast paths) and run under qemu-arm pinned to
#    CPU $CPU: the median CPU time of one call over $ROUNDS x ~0.1 s of calls, each timed on its
#    own (CPU time, not wall time: a call of milliseconds is often preempted on a shared machine).
#    This is the CPU time qemu-user takes to emulate the call on this host, not the time of a
#    Cortex-A7: it ranks models by the ARM code's cost, but its scale is this machine's emulation
#    speed (docs/compression.md).
# 4. fit: per class, the fastest pass of each model (x86.csv, arm.csv); the spread between passes
#    (repeatability) printed and written to spread.txt; `condenser predict --fit` on 3 of every 4
#    models, holding out the 4th, into x86.costs and arm-a7-qemu.costs. Copy them to
#    compress/latency_x86.costs and compress/latency_arm-a7-qemu.costs to make them the built-in
#    ones.
#
# 5. check (only when asked, STAGES=check COSTS=DIR): a fresh set of models (another SEED), measured
#    as above, against cost models fitted on another run (DIR/x86.costs, DIR/arm-a7-qemu.costs):
#    the median and largest relative error over every model of this run, none of which the fit
#    saw.
#
# usage: bench/latency_fit.sh CONDENSER WORKDIR [N [SEED]]   (a Release build's condenser)
# env: STAGES (default "models x86 arm fit"), PASSES (2), ROUNDS (5), CPU (1), COSTS (check)
set -euo pipefail
bin=$(realpath "${1:?usage: latency_fit.sh CONDENSER WORKDIR [N [SEED]]}")
d=${2:?usage: latency_fit.sh CONDENSER WORKDIR [N [SEED]]}
n=${3:-96}
seed=${4:-1}
STAGES=${STAGES:-models x86 arm fit}
PASSES=${PASSES:-2}
ROUNDS=${ROUNDS:-5}
CPU=${CPU:-1}
src=${CND_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
mkdir -p "$d"
pin=(taskset -c "$CPU")

stage() { [[ " $STAGES " == *" $1 "* ]]; }

if stage models; then
  python3 "$src/bench/latency_models.py" "$n" "$seed" > "$d/specs.txt"
  : > "$d/skipped.txt"
  i=0
  while IFS= read -r spec; do
    m="$d/m$i"
    if [ ! -s "$m.cndq" ]; then
      if ! { "$bin" train --arch "$spec" --epochs 1 --subset 128 --threads 1 --no-checkpoint \
               --out "$m.cnd" > /dev/null 2> "$m.err" &&
             "$bin" quantize "$m.cnd" --out "$m.cndq" --subset 200 --calib 100 --no-report \
               > /dev/null 2>> "$m.err"; }; then
        echo "m$i: $(tail -1 "$m.err")  [$spec]" >> "$d/skipped.txt"
        rm -f "$m.cndq"
      fi
    fi
    i=$((i + 1))
  done < "$d/specs.txt"
  echo "models: $(ls "$d"/m*.cndq | wc -l) made, $(wc -l < "$d/skipped.txt") skipped"
fi

# Lists the model indices that have an artifact, waiting for each to be made or skipped (so
# the measuring stages can run while the models stage is still making them).
models() {
  local i waited
  for i in $(seq 0 $((n - 1))); do
    waited=0
    while [ ! -s "$d/m$i.cndq" ] && ! grep -q "^m$i:" "$d/skipped.txt" 2> /dev/null; do
      [ "$waited" -lt 1800 ] || { echo "m$i: not made after 30 minutes" >&2; return 1; }
      sleep 2
      waited=$((waited + 2))
    done
    [ -s "$d/m$i.cndq" ] && echo "$i"
  done
  return 0
}

p50() { python3 -c 'import json,sys; print(json.load(sys.stdin)["p50_us"])'; }
minof() { python3 -c 'import sys; print(min(float(x) for x in sys.argv[1:]))' "$@"; }

if { stage x86 || stage arm; } && [ ! -s "$d/specs.txt" ]; then
  echo "no $d/specs.txt: run the models stage first (it may run beside the measuring ones)" >&2
  exit 1
fi

if stage x86; then
  for p in $(seq "$PASSES"); do
    echo "model,us" > "$d/x86_pass$p.csv"
    while read -r -u 3 i; do # indices on fd 3: the commands inside keep stdin
      a="$d/m$i.cndq"
      est=$("${pin[@]}" "$bin" bench "$a" --iters 200 --batch 1 --json | p50)
      iters=$(python3 -c "print(max(200, min(20000, int(150000 / max($est, 1e-3)))))")
      runs=()
      for _ in $(seq "$ROUNDS"); do
        runs+=("$("${pin[@]}" "$bin" bench "$a" --iters "$iters" --batch 1 --json | p50)")
      done
      echo "m$i,$(minof "${runs[@]}")" >> "$d/x86_pass$p.csv"
    done 3< <(models)
    echo "x86 pass $p: $(($(wc -l < "$d/x86_pass$p.csv") - 1)) models"
  done
fi

if stage arm; then
  for tool in arm-linux-gnueabihf-gcc qemu-arm; do
    command -v "$tool" > /dev/null || { echo "$tool is not installed (scripts/lib.sh)" >&2; exit 1; }
  done
  rt=$src/deploy/runtime
  arm-linux-gnueabihf-gcc -std=c99 -O2 -mcpu=cortex-a7 -static -I"$rt" "$rt"/rt_*.c \
    "$src/bench/rt_time.c" -o "$d/rt_time_arm"
  for p in $(seq "$PASSES"); do
    echo "model,us" > "$d/arm_pass$p.csv"
    while read -r -u 3 i; do # indices on fd 3: the commands inside keep stdin
      a="$d/m$i.cndq"
      est=$("${pin[@]}" qemu-arm "$d/rt_time_arm" "$a" 1 1 | awk '{print $2}')
      calls=$(python3 -c "print(max(1, min(2000, int(100000 / max($est, 1e-3)))))")
      us=$("${pin[@]}" qemu-arm "$d/rt_time_arm" "$a" "$calls" "$ROUNDS" | awk '{print $2}')
      [ -n "$us" ] || { echo "m$i: rt_time failed under qemu-arm" >&2; exit 1; }
      echo "m$i,$us" >> "$d/arm_pass$p.csv"
    done 3< <(models)
    echo "arm pass $p: $(($(wc -l < "$d/arm_pass$p.csv") - 1)) models"
  done
fi

if stage fit; then
  for cls in x86 arm; do
    [ -s "$d/${cls}_pass1.csv" ] || continue
    python3 - "$d" "$cls" <<'PY'
import csv, glob, os, statistics, sys
d, cls = sys.argv[1], sys.argv[2]
passes = []
for f in sorted(glob.glob(os.path.join(d, cls + "_pass*.csv"))):
    passes.append({r["model"]: float(r["us"]) for r in csv.DictReader(open(f))})
models = sorted(set.intersection(*(set(p) for p in passes)), key=lambda m: int(m[1:]))
with open(os.path.join(d, cls + ".csv"), "w") as out:
    out.write("model,latency_us,heldout\n")
    for m in models:
        out.write("%s.cnd,%.3f,%d\n" % (m, min(p[m] for p in passes), int(m[1:]) % 4 == 3))
line = "%s: %d models, %d passes" % (cls, len(models), len(passes))
if len(passes) > 1:
    spread = sorted((max(p[m] for p in passes) - min(p[m] for p in passes)) /
                    min(p[m] for p in passes) for m in models)
    line += "; spread between passes (max-min)/min: median %.1f%%, 90th %.1f%%, max %.1f%%" % (
        100 * statistics.median(spread), 100 * spread[int(0.9 * (len(spread) - 1))],
        100 * spread[-1])
print(line)
with open(os.path.join(d, "spread.txt"), "a") as f:
    f.write(line + "\n")
PY
    dev=x86 kern=x86
    [ "$cls" = arm ] && dev=arm-a7-qemu kern=ref
    "$bin" predict --fit "$d/$cls.csv" --device "$dev" --kernels "$kern" --out "$d/$dev.costs"
  done
fi

if stage check; then
  costs=${COSTS:?STAGES=check needs COSTS=DIR holding x86.costs and arm-a7-qemu.costs}
  for cls in x86 arm; do
    [ -s "$d/${cls}_pass1.csv" ] || continue
    dev=x86
    [ "$cls" = arm ] && dev=arm-a7-qemu
    python3 - "$bin" "$d" "$cls" "$dev" "$costs/$dev.costs" <<'PY'
import csv, glob, json, os, statistics, subprocess, sys
bin_, d, cls, dev, costs = sys.argv[1:]
passes = [{r["model"]: float(r["us"]) for r in csv.DictReader(open(f))}
          for f in sorted(glob.glob(os.path.join(d, cls + "_pass*.csv")))]
err = []
for m in sorted(set.intersection(*(set(p) for p in passes)), key=lambda m: int(m[1:])):
    y = min(p[m] for p in passes)
    out = subprocess.run([bin_, "predict", os.path.join(d, m + ".cnd"), "--device", dev,
                          "--costs", costs, "--json"], check=True, capture_output=True, text=True)
    err.append(abs(json.loads(out.stdout)["predicted_us"] - y) / y)
err.sort()
print("%s check on %d fresh models against %s: error median %.1f%%, max %.1f%%" % (
    dev, len(err), costs, 100 * statistics.median(err), 100 * err[-1]))
PY
  done
fi
