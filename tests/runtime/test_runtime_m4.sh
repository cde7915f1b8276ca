#!/usr/bin/env bash
# test_runtime_m4.sh SRC_DIR CONDENSER MKART: deploy/runtime builds for a Cortex-M4 with
# gcc-arm-none-eabi (toolchain file deploy/runtime/cortex-m4.cmake), without floating-point
# helpers (soft-float ABI: any float operation would appear as an __aeabi_f*/__aeabi_d* call),
# and links into a bare-metal firmware with an exported artifact. Prints the code sizes.
# Exit 77 = skipped.
set -euo pipefail
src=$1
bin=$2
mkart=$3
for tool in arm-none-eabi-gcc arm-none-eabi-size arm-none-eabi-nm cmake; do
  command -v "$tool" >/dev/null || { echo "skipped: $tool not installed (scripts/lib.sh CND_TEST_PACKAGES)"; exit 77; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$mkart" "$work"
"$bin" export "$work/mlp8.cndq" --c-array --out "$work/model.c" 2>/dev/null
cmake -S "$src/deploy/runtime" -B "$work/build" -DCMAKE_TOOLCHAIN_FILE="$src/deploy/runtime/cortex-m4.cmake" \
  -DCND_RT_FIRMWARE_MODEL="$work/model.c" >/dev/null
cmake --build "$work/build" >/dev/null
fail=0
lib=$work/build/libcnd_runtime.a fw=$work/build/cnd_rt_firmware
if arm-none-eabi-nm "$lib" | grep -E '__aeabi_[fd]|__aeabi_[il]2[fd]|__(add|sub|mul|div)[sd]f3'; then
  echo "FAIL: the runtime library uses floating-point helpers"; fail=1
fi
if arm-none-eabi-nm "$fw" | grep -E '__aeabi_[fd](add|sub|mul|div|cmp)'; then
  echo "FAIL: the firmware pulls floating-point arithmetic"; fail=1
fi
text=$(arm-none-eabi-size -t "$lib" | awk 'END{print $1}')
model=$(stat -c %s "$work/mlp8.cndq")
fwtext=$(arm-none-eabi-size "$fw" | awk 'NR==2{print $1}')
echo "cortex-m4 runtime library: $text bytes of code and constants (-Os, thumb)"
echo "cortex-m4 firmware: $fwtext bytes of flash including a $model-byte artifact ($((fwtext - model)) without it)"
[ "$text" -gt 1000 ] && [ "$text" -lt 65536 ] || { echo "FAIL: implausible code size $text"; fail=1; }
if [ "$fail" -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit "$fail"
