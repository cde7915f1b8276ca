# scripts/lib.sh: shared by scripts/demo, scripts/test and scripts/bench.
# Installs missing Debian packages (as root, with apt-get) or names them and stops.

CND_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Packages needed to build and run Condenser.
CND_BUILD_PACKAGES="build-essential cmake pkg-config libzmq3-dev libsodium-dev libssl-dev
  libopenblas-dev libsqlite3-dev libprotobuf-c-dev protobuf-c-compiler zlib1g-dev libinih-dev
  libpng-dev libjpeg62-turbo-dev libmicrohttpd-dev libcurl4-openssl-dev libsystemd-dev libpq-dev dataset-fashion-mnist"

# Packages scripts/package needs to build the .deb (help2man for the man pages, dpkg-dev for
# dpkg-shlibdeps), and debootstrap for the test that installs it in a bare Debian 12 root.
CND_PACKAGE_PACKAGES="help2man dpkg-dev debootstrap"

# Packages only the tests need (scripts/test installs them): chromium opens the audit report
# headless; sqlite3, openssl and python3 run the auditor guide's independent verification recipe
# (python3 also runs scripts/check-layers; clang-format, scripts/check-format); python3-cryptography
# runs tests/crypto/test_secagg_spec.py (the SecAgg+ byte layout reimplemented from the docs);
# python3-torch, python3-onnx and numpy check the ONNX engine against PyTorch
# (tests/compress/test_onnx_torch.py); python3-mpmath is the independent DP accountant
# (tests/common/test_dp_accountant.py); the cross compilers (with the armhf C library headers, only
# a recommendation of gcc-arm-linux-gnueabihf that --no-install-recommends skips) and qemu-user
# build and run the edge runtime for ARM (tests/runtime/test_runtime_cross.sh, test_runtime_m4.sh);
# prometheus brings promtool, which checks the metrics endpoints' exposition format; systemd brings
# systemd-analyze, which checks the service units (tests/packaging/test_units); postgresql brings
# the server the rollout-state tests start on a private socket (tests/rollout/test_rollout_pg.sh).
CND_TEST_PACKAGES="chromium sqlite3 openssl python3 python3-cryptography clang-format
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user gcc-arm-none-eabi libnewlib-arm-none-eabi
  python3-torch python3-onnx python3-numpy python3-mpmath prometheus nginx systemd postgresql $CND_PACKAGE_PACKAGES"

cnd_missing_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  echo "${missing[@]}"
}

# cnd_install PACKAGE...: installs what is missing, or explains exactly what to install.
cnd_install() {
  local missing
  missing=$(cnd_missing_packages "$@")
  [ -z "$missing" ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: these Debian packages are missing: $missing" >&2
    echo "install them as root with:  apt-get update && apt-get install -y $missing" >&2
    exit 1
  fi
  echo "installing: $missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || { echo "error: apt-get update failed" >&2; exit 1; }
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing >&2 ||
    { echo "error: apt-get install failed for: $missing" >&2; exit 1; }
}

# cnd_build DIR [cmake args...]: configures (every time, so options given here always hold in
# an existing build directory too), then builds incrementally.
cnd_build() {
  local dir=$1
  shift
  cmake -S "$CND_ROOT" -B "$dir" "$@" >/dev/null || exit 1
  cmake --build "$dir" -j"$(nproc)" >/dev/null || cmake --build "$dir" -j1 || exit 1
}
