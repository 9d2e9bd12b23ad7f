#!/usr/bin/env bash
# The C kernels (CKernels, CHalf) against scalar references (tests-c/kernels_check.c), on two CPUs:
#   native x86-64: the AVX2+FMA kernels, then the portable ones;
#   aarch64 (what a Raspberry Pi runs): cross-compiled with clang --target=aarch64-linux-gnu (Debian's
#   gcc-aarch64-linux-gnu and libc6-dev-arm64-cross supply the linker and libc) and run under
#   qemu-aarch64 (qemu-user-static). There the portable kernels are NEON code and f16 conversion is
#   the hardware fcvt path.
# Installs the three Debian packages if missing; where that is impossible it prints SKIP for aarch64.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.build/kernels-test}
mkdir -p "$OUT"
CC=${CC:-clang}
sources=(Sources/CKernels/kernels.c Sources/CKernels/layers.c Sources/CHalf/chalf.c tests-c/kernels_check.c)
flags=(-O2 -std=gnu11 -Wall -Wno-unused-function -ISources/CKernels/include -ISources/CHalf/include)

echo "== C kernels, native"
"$CC" "${flags[@]}" "${sources[@]}" -lm -o "$OUT/kernels-check"
"$OUT/kernels-check"

echo "== C kernels, aarch64 under qemu"
packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]}" >&2
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 \
    || { echo "SKIP aarch64 kernels: cannot install ${missing[*]}"; exit 0; }
fi
# -static: qemu-aarch64 then needs no arm64 loader or libraries
"$CC" --target=aarch64-linux-gnu "${flags[@]}" -static "${sources[@]}" -lm -o "$OUT/kernels-check-aarch64"
file "$OUT/kernels-check-aarch64" 2>/dev/null | grep -q "ARM aarch64" || { echo "FAIL: not an aarch64 binary"; exit 1; }
qemu-aarch64-static "$OUT/kernels-check-aarch64"
