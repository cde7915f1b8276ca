#!/usr/bin/env bash
# prune_init.sh: pruning the Fashion-MNIST CNN teacher, and students started from the pruned
# teacher against the same students trained from scratch (docs/benchmarks.md, "Pruning").
#
#   1. the teacher: the benchmarks' CNN, TEACHER_EPOCHS (5) epochs of `condenser train`;
#   2. for each MAC fraction F in FRACTIONS (1/4 and 1/16 of the teacher's MACs), for each
#      score in SCORES: `condenser prune --target-macs` then EPOCHS epochs of fine-tuning by
#      distillation from the teacher;
#   3. for each F and seed in SEEDS: the pruned architecture (L1, no fine-tune) as a student of
#      the teacher for EPOCHS epochs (`condenser distill`, T 2, alpha 0.5, all 60,000 images),
#      once from a random initialisation (--arch) and once from the pruned weights (--init).
# Every accuracy is on the 10,000 test images. Prints one line per run and markdown rows.
#
# usage: bench/prune_init.sh CONDENSER [WORKDIR]   (a Release build's condenser; WORKDIR keeps
#        the models, and a teacher.cnd already there is reused)
set -euo pipefail
bin=${1:?usage: prune_init.sh CONDENSER [WORKDIR]}
d=${2:-$(mktemp -d)}
mkdir -p "$d"
TEACHER_EPOCHS=${TEACHER_EPOCHS:-5}
EPOCHS=${EPOCHS:-3}
SEEDS=${SEEDS:-1 2}
SCORES=${SCORES:-l1 taylor}
FRACTIONS=${FRACTIONS:-4 16}
THREADS=${THREADS:-2}
teacher="conv2d(32,3,pad=1) relu maxpool(2) conv2d(64,3,pad=1) relu maxpool(2) flatten dense(128) relu dense(10)"
acc() { sed -n 's/^test accuracy \([0-9.]*\).*/\1/p' "$1" | tail -1; }
if [ ! -f "$d/teacher.cnd" ]; then
  "$bin" train --arch "$teacher" --epochs "$TEACHER_EPOCHS" --threads "$THREADS" --no-checkpoint \
    --out "$d/teacher.cnd" > "$d/teacher.log"
fi
tacc=$("$bin" eval "$d/teacher.cnd" --json | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["accuracy"])')
macs=$("$bin" prune "$d/teacher.cnd" --out "$d/nop.cnd" --ratio 0 --json |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["macs_before"])')
echo "teacher: accuracy $tacc, $macs MACs"
rows=()
for f in $FRACTIONS; do
  target=$((macs / f))
  for s in $SCORES; do
    "$bin" prune "$d/teacher.cnd" --out "$d/p$f-$s.cnd" --target-macs "$target" --score "$s" \
      --epochs "$EPOCHS" --threads "$THREADS" --json > "$d/p$f-$s.json"
    line=$(python3 - "$d/p$f-$s.json" "$tacc" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = float(sys.argv[2])
print("| 1/%s | %s | %d -> %d | %d -> %d | %.4f | %.4f | %+.2f |" % (
    sys.argv[1].split("/p")[-1].split("-")[0], r["score"], r["params_before"], r["params_after"],
    r["macs_before"], r["macs_after"], r["accuracy_pruned"], r["accuracy_finetuned"],
    100 * (r["accuracy_finetuned"] - t)))
PY
)
    echo "prune $line"
    rows+=("$line")
  done
  # the pruned architecture without fine-tuning: the --init student's starting point
  "$bin" prune "$d/teacher.cnd" --out "$d/init$f.cnd" --target-macs "$target" --threads "$THREADS" \
    --json > "$d/init$f.json"
  spec=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["spec"])' "$d/init$f.json")
  for seed in $SEEDS; do
    "$bin" distill --teacher "$d/teacher.cnd" --arch "$spec" --epochs "$EPOCHS" --seed "$seed" \
      --threads "$THREADS" --no-checkpoint --out "$d/scratch$f-$seed.cnd" > "$d/scratch$f-$seed.log"
    "$bin" distill --teacher "$d/teacher.cnd" --init "$d/init$f.cnd" --epochs "$EPOCHS" \
      --seed "$seed" --threads "$THREADS" --no-checkpoint --out "$d/init$f-$seed.cnd" \
      > "$d/init$f-$seed.log"
    line="| 1/$f | \`$spec\` | $seed | $(acc "$d/scratch$f-$seed.log") | $(acc "$d/init$f-$seed.log") |"
    echo "student $line"
    rows+=("$line")
  done
done
echo
echo "teacher $tacc, $macs MACs; prune rows: fraction | score | params | MACs | pruned | fine-tuned | vs teacher (points)"
echo "student rows: fraction | architecture | seed | from scratch | from the pruned teacher"
printf '%s\n' "${rows[@]}"
