#!/usr/bin/env bash
# Builds a libFuzzer target and runs it for a bounded time or number of runs.
#   fuzz/run.sh                          # the safetensors decoder, 60 seconds
#   TARGET=toml fuzz/run.sh              # the TOML reader (worker.toml, fleet.toml)
#   SECONDS_BUDGET=600 RUNS=10000000 fuzz/run.sh
# Crashing inputs land in .build/fuzz/ as crash-*; add them to Tests as regression cases.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${TARGET:-safetensors}
out=.build/fuzz/$TARGET
mkdir -p "$out/corpus"
case "$TARGET" in
  safetensors)
    cp fuzz/seeds/* "$out/corpus/" 2>/dev/null || true
    sources=(Sources/FedPiWire/JSON.swift Sources/FedPiWire/Safetensors.swift fuzz/SafetensorsFuzzer.swift) ;;
  toml)
    cp provisioning/fleet.example.toml docker/fleet.compose.toml "$out/corpus/"
    sources=(Sources/FedPiRuntime/TOML.swift fuzz/TOMLFuzzer.swift) ;;
  *) echo "TARGET is safetensors or toml" >&2; exit 2 ;;
esac
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name "Fuzz$TARGET" "${sources[@]}" -o "$out/fuzzer"
cd "$out"
./fuzzer -max_total_time="${SECONDS_BUDGET:-60}" -runs="${RUNS:--1}" -max_len=4096 -timeout=5 -print_final_stats=1 corpus
