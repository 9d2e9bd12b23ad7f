#!/usr/bin/env bash
# FedPi vs Flower + PyTorch, same machine, same session: 3 workers with classes 0-3 / 4-6 / 7-9 of
# Fashion-MNIST, mnist-cnn, FedAvg, 1 local epoch (SGD 0.01/0.9, batch 64) per round, central
# evaluation on the 10,000 test images after each round; real processes on loopback for both
# (FedPi over HTTP, Flower over gRPC), one training thread per worker. Prints per-round accuracy and
# time, time to TARGET accuracy, the non-training share of FedPi's rounds, bytes and peak memory.
# FedPi runs its fleet-file defaults (scripts/demo.sh), plus any FLEET_EXTRA lines (e.g.
# FLEET_EXTRA='local_steps = 188'). Flower runs each configuration named in
# FLOWER (default "fedavg"; "same" is Flower's own strategy with FedPi's default hyper-parameters and
# loss, FLOWER_SAME_ARGS; "fedavg-steps" is FedAvg with at most FLOWER_STEPS=188 local steps a round),
# one after another, on the same split and model.
#   ROUNDS=12 TARGET=0.75,0.80,0.85 FLOWER="fedavg same" bench/federated.sh    ONLY=fedpi|flower runs one side
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-10}
TARGET=${TARGET:-0.75,0.80,0.85}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
# FedPi's fleet-file defaults, for Flower's FedAvgM (keep in step with FleetConfig and FedOpt)
FLOWER_SAME_ARGS=${FLOWER_SAME_ARGS:---strategy fedavgm --server-lr 1 --server-momentum 0.7}
OUT=bench/out/federated
mkdir -p "$OUT"
./scripts/deps.sh
if [ "${ONLY:-}" != flower ]; then
  swift build -c release --product fedpi-worker 2>&1 | grep -E "error|Build" | tail -1 >&2
  swift build --product fedpi-aggregator 2>&1 | grep -E "error|Build" | tail -1 >&2
  echo "== FedPi: $ROUNDS rounds" >&2
  WORK="$OUT/fedpi" WORKER_BIN=.build/release BIN=.build/debug DATA="$DATA" ROUNDS="$ROUNDS" ./scripts/demo.sh | tee "$OUT/fedpi.txt"
fi
if [ "${ONLY:-}" != fedpi ]; then
  if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c "import torch, flwr" 2>/dev/null; then
    echo "installing PyTorch and Flower from PyPI into bench/.venv (one time, large download)" >&2
    python3 -m venv bench/.venv
    bench/.venv/bin/pip install -q torch numpy safetensors flwr
  fi
  py=bench/.venv/bin/python
  for run in ${FLOWER:-fedavg}; do
    case "$run" in
      fedavg) args="" ;;
      same) args="$FLOWER_SAME_ARGS" ;;
      fedavg-steps) args="--local-steps ${FLOWER_STEPS:-188}" ;;
      *) echo "FLOWER: unknown run $run (fedavg, same, fedavg-steps)" >&2; exit 2 ;;
    esac
    echo "== Flower ($run): $ROUNDS rounds" >&2
    # shellcheck disable=SC2086  # args are words
    $py bench/flower_fedavg.py server --rounds "$ROUNDS" --data "$DATA" --out "$OUT/flower-$run.jsonl" $args \
      >"$OUT/flower-$run-server.log" 2>&1 &
    server=$!
    sleep 3
    clients=()
    i=0
    for c in 0-3 4-6 7-9; do
      i=$((i + 1))
      # shellcheck disable=SC2086
      $py bench/flower_fedavg.py client --classes "$c" --data "$DATA" --peak-file "$OUT/flower-$run-client-$i.peak" $args \
        >"$OUT/flower-$run-client-$i.log" 2>&1 &
      clients+=($!)
    done
    wait "$server"
    for pid in "${clients[@]}"; do wait "$pid" || true; done
  done
fi
python3 bench/federated_report.py --out "$OUT" --target "$TARGET" --flower "${FLOWER:-fedavg}"
