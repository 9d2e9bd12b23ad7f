#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors decoder and runs it for a bounded time.
#   fuzz/run.sh            # 60 seconds
#   SECONDS_BUDGET=600 fuzz/run.sh
# Crashing inputs land in .build/fuzz/ as crash-*; add them to Tests as regression cases.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/fuzz
mkdir -p "$out/corpus"
cp fuzz/seeds/* "$out/corpus/" 2>/dev/null || true
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name FuzzSafetensors \
  Sources/FedPiWire/JSON.swift Sources/FedPiWire/Safetensors.swift fuzz/SafetensorsFuzzer.swift \
  -o "$out/safetensors-fuzzer"
cd "$out"
./safetensors-fuzzer -max_total_time="${SECONDS_BUDGET:-60}" -max_len=4096 -timeout=5 -print_final_stats=1 corpus
