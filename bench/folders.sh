#!/usr/bin/env bash
# Image class folders (issue 17), one run on this machine, release builds:
#   1. Fashion-MNIST written as PNG class folders (fedpi data export): images/s
#   2. decode + resize images/s: fedpi data inspect (decode only) and the training load (to 28x28)
#   3. mnist-cnn, one epoch, the same seed, from the IDX files and from the PNG folders: accuracy and
#      training samples/s (the folders' ratio to IDX)
#   4. the worker's peak memory (VmHWM) once it has decoded all 60,000 training images into its shard,
#      and after a restart that reuses the shard
#   5. xray-cnn on X-ray-like folders (bench/xray_like.py, 4,000 train images around 128x128) against
#      the same network in PyTorch (bench/torch_xray_cnn.py): training samples/s, one epoch
#   bench/folders.sh        (OUT=bench/out/folders, DATA=/usr/share/datasets/fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-bench/out/folders}
swift build -c release --product fedpi 2>&1 | tail -1 >&2
swift build -c release --product fedpi-worker 2>&1 | tail -1 >&2
FEDPI=.build/release/fedpi WORKER=.build/release/fedpi-worker
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch, numpy, PIL" 2>/dev/null; then
  echo "installing PyTorch, numpy and Pillow from PyPI into bench/.venv (one time, large download)" >&2
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q torch numpy safetensors pillow
fi
mkdir -p "$OUT"
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.0f}')" "$@"; }
field() { python3 -c "import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

echo "== 1. Fashion-MNIST as PNG class folders"
rm -rf "$OUT/fmnist-png"
t=$(now); $FEDPI data export --data "$DATA" --out "$OUT/fmnist-png" >/dev/null; t2=$(now)
echo "export: 70000 images in $(python3 -c "print(f'{$t2 - $t:.1f}')") s, $(rate 70000 "$t" "$t2") images/s; $(du -sh "$OUT/fmnist-png" | cut -f1) on disk"

echo "== 2. decoding"
t=$(now); $FEDPI data inspect "$OUT/fmnist-png" >/dev/null; t2=$(now)
echo "fedpi data inspect (decode every file): $(rate 70000 "$t" "$t2") images/s"

echo "== 3. mnist-cnn, 1 epoch, seed 1: IDX files vs PNG folders"
idx=$($FEDPI train --data "$DATA" --json 2>/dev/null | tail -1)
png=$($FEDPI train --data "$OUT/fmnist-png" --json 2>"$OUT/train-png.err" | tail -1)
grep "decoded" "$OUT/train-png.err" || true
for name in idx png; do
  j=${!name}
  echo "$name: test accuracy $(field "$j" test_accuracy), $(field "$j" train_samples_per_s) training samples/s, peak $(field "$j" peak_rss_mib) MiB"
done
python3 -c "import json, sys; a, b = (json.loads(x) for x in sys.argv[1:]); print(f'folders/IDX training samples/s: {b[\"train_samples_per_s\"] / a[\"train_samples_per_s\"]:.3f}; accuracy difference {100 * (b[\"test_accuracy\"] - a[\"test_accuracy\"]):+.2f} points')" "$idx" "$png"

echo "== 4. the worker on 60,000 PNG images"
state=$(mktemp -d)
for run in first restart; do
  rm -f "$state/port"
  $WORKER --name bench --listen 127.0.0.1:0 --port-file "$state/port" --data "$OUT/fmnist-png" --state-dir "$state" >"$state/$run.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do [ -s "$state/port" ] && break; sleep 0.2; done
  [ -s "$state/port" ] || { cat "$state/$run.log"; exit 1; }
  echo "$run start: $(grep -o 'image folders: [^n]*' "$state/$run.log" | head -1) $(grep -o 'took=[0-9.]*' "$state/$run.log" | head -1)s; peak RSS $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' /proc/$pid/status)"
  kill -TERM $pid; wait $pid || true
done
rm -rf "$state"

echo "== 5. xray-cnn vs PyTorch on X-ray-like folders"
[ -d "$OUT/xray/train" ] || bench/.venv/bin/python bench/xray_like.py "$OUT/xray"
for side in 64 128; do
  model=xray-cnn; [ $side = 128 ] && model=xray-cnn-128
  f=$($FEDPI train --data "$OUT/xray" --model $model --epochs 1 --batch-size 32 --json 2>"$OUT/xray-$side.err" | tail -1)
  p=$(bench/.venv/bin/python bench/torch_xray_cnn.py --data "$OUT/xray" --side $side --epochs 1 --batch-size 32)
  grep "decoded" "$OUT/xray-$side.err" | head -1
  echo "$model: FedPi $(field "$f" train_samples_per_s) samples/s (accuracy $(field "$f" test_accuracy), peak $(field "$f" peak_rss_mib) MiB);" \
       "PyTorch $(field "$p" train_samples_per_s) samples/s (accuracy $(field "$p" test_accuracy), peak $(field "$p" peak_rss_mib) MiB, Pillow decode $(field "$p" images_decoded_per_s) images/s)"
  python3 -c "import json, sys; a, b = (json.loads(x) for x in sys.argv[1:]); print(f'  FedPi/PyTorch training samples/s: {a[\"train_samples_per_s\"] / b[\"train_samples_per_s\"]:.2f}')" "$f" "$p"
done
