#!/usr/bin/env bash
# The worker's request handling fuzzed through its router (WorkerAPITests'
# testFuzzedRequestsGetAnAPIAnswerAndNeverTrap) for TOTAL requests, in processes of CHUNK requests
# with seeds 1, 2, …: HummingbirdTesting's router client keeps ~5 KB per request, so one process
# cannot take millions. JOBS processes at a time. Not part of `make test` (45 min on one core here).
#   TOTAL=10000000 CHUNK=500000 JOBS=1 fuzz/requests.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${TOTAL:-10000000}
CHUNK=${CHUNK:-500000}
JOBS=${JOBS:-1}
OUT=.build/fuzz-requests
mkdir -p "$OUT"
swift build --build-tests 2>&1 | grep -E "error|Compiling|Build" | tail -1
start=$(date +%s)
chunks=$(( (TOTAL + CHUNK - 1) / CHUNK ))
run() {
  FEDPI_FUZZ_REQUESTS=$CHUNK FEDPI_FUZZ_SEED=$1 .build/debug/FedPiPackageTests.xctest \
    FedPiWorkerTests.WorkerAPITests/testFuzzedRequestsGetAnAPIAnswerAndNeverTrap >"$OUT/seed-$1.log" 2>&1 \
    || { echo "seed $1 FAILED: $OUT/seed-$1.log"; return 1; }
  grep -h "fuzzed requests in" "$OUT/seed-$1.log" | tail -1 | sed "s/^/seed $1: /"
}
export -f run
export CHUNK OUT
seq "$chunks" | xargs -P "$JOBS" -I{} bash -c 'run {}'
echo "$((chunks * CHUNK)) fuzzed requests in $(( $(date +%s) - start )) s, $chunks processes, every answer an API status"
