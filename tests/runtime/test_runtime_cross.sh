#!/usr/bin/env bash
# test_runtime_cross.sh SRC_DIR MKART: integer inference gives the same bits on x86-64 and on
# 32-bit ARM. Builds deploy/runtime plus tools/rt_driver.c natively and for ARM Linux
# (gcc-arm-linux-gnueabihf, static), runs the ARM binary under qemu-arm (qemu-user), and
# compares the self-test result and a SHA-256 over the logits of 300 seeded random inputs per
# artifact (fast x86 kernels, the x86 reference kernels, and ARM). Exit 77 = skipped.
set -euo pipefail
src=$1
mkart=$2
for tool in arm-linux-gnueabihf-gcc qemu-arm cc; do
  command -v "$tool" >/dev/null || { echo "skipped: $tool not installed (scripts/lib.sh CND_TEST_PACKAGES)"; exit 77; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rt=$src/deploy/runtime
"$mkart" "$work"
cc -std=c99 -O2 -Wall -I"$rt" "$rt"/rt_*.c "$rt/tools/rt_driver.c" -o "$work/drv-x86"
arm-linux-gnueabihf-gcc -std=c99 -O2 -Wall -static -I"$rt" "$rt"/rt_*.c "$rt/tools/rt_driver.c" \
  -o "$work/drv-arm"
pass=0 fail=0
for a in "$work"/*.cndq; do
  name=$(basename "$a")
  x86=$("$work/drv-x86" "$a" 300 7 2>"$work/k")
  kern=$(cat "$work/k")
  ref=$("$work/drv-x86" "$a" 300 7 ref 2>/dev/null)
  arm=$(qemu-arm "$work/drv-arm" "$a" 300 7 2>"$work/karm")
  if [[ "$x86" == "$arm" && "$ref" == "$arm" && "$arm" == *"selftest ok"* ]]; then
    pass=$((pass + 1))
    echo "$name: identical on x86 ($(tr '\n' ' ' <"$work/k")), x86 ref and ARM ($(tr '\n' ' ' <"$work/karm")): $(grep sha256 <<<"$arm")"
  else
    fail=$((fail + 1))
    printf '%s differs:\n--- x86 (%s)\n%s\n--- x86 ref\n%s\n--- arm\n%s\n' "$name" "$kern" "$x86" "$ref" "$arm"
  fi
done
# A corrupted artifact is refused the same way on ARM.
cp "$work/cnn8.cndq" "$work/bad.cndq"
printf '\x01' | dd of="$work/bad.cndq" bs=1 seek=200 conv=notrunc 2>/dev/null
out=$(qemu-arm "$work/drv-arm" "$work/bad.cndq" 1 2>/dev/null || true)
if [[ "$out" == *"digest mismatch"* ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "corrupt artifact not refused on ARM: $out"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
