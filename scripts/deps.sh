#!/usr/bin/env bash
# Installs the Debian packages FedPi builds and tests against, if any is missing:
# OpenBLAS (GEMM), zlib (gzip IDX files), pkg-config, libsystemd (sd_notify), and Fashion-MNIST
# (test and demo data), stb_image (PNG/JPEG for predictions), SQLite (the aggregator's history, GRDB).
set -euo pipefail
packages=(libopenblas-dev zlib1g-dev pkg-config libsystemd-dev libstb-dev libsqlite3-dev systemd dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing ${missing[*]}" >&2
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
