#!/usr/bin/env bash
# FedPi vs PyTorch, one run, same machine: mnist-cnn, one epoch of full Fashion-MNIST at batch 64
# (SGD lr 0.01 momentum 0.9), evaluation at batch 1000. Prints samples/s, accuracy, peak RSS, ratios.
#   bench/train.sh                 # 1 seed
#   SEEDS=3 bench/train.sh         # mean over 3 seeds (accuracy comparison)
#   LIMIT=6400 bench/train.sh      # quick run on a subset
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
swift build -c release --product fedpi 2>&1 | grep -E "error|warning: unre|Compiling|Build" | tail -2 >&2 || true
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch, numpy, safetensors" 2>/dev/null; then
  echo "installing PyTorch, numpy and safetensors from PyPI into bench/.venv (one time, large download)" >&2
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q torch numpy safetensors
fi
exec bench/.venv/bin/python bench/compare.py --fedpi .build/release/fedpi --seeds "${SEEDS:-1}" --limit "${LIMIT:-0}" \
  --data "${DATA:-/usr/share/datasets/fashion-mnist}"
