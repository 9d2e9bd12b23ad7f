#!/usr/bin/env bash
# FedPi on one machine: three workers on loopback with the classic split of the training set
# (classes 0-3, 4-6, 7-9) and an aggregator that runs ROUNDS rounds of FedAvg, prints a row per
# round, saves the final model, then stops everything. The fleet speaks mutual TLS with a throwaway
# CA made in $WORK/tls (TLS=0: plain HTTP on loopback).
#   ROUNDS=10  DATA=/usr/share/datasets/fashion-mnist  LIMIT=  (samples per worker; empty: all)
#   MODEL=mnist-cnn  ENCODING=f16  WORK=.build/demo  BIN=.build/debug  WORKER_BIN=$BIN  TLS=1  API_PORT=8480
#   WORKER_CPUS=  AGGREGATOR_CPUS=  (taskset CPU lists: keep the workers and the aggregator apart, as boards and a workstation are)
#   FLEET_EXTRA=  (more fleet-file lines, e.g. FLEET_EXTRA='local_steps = 250')
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/debug}
WORKER_BIN=${WORKER_BIN:-$BIN}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
ROUNDS=${ROUNDS:-10}
MODEL=${MODEL:-mnist-cnn}
ENCODING=${ENCODING:-f16}
WORK=${WORK:-.build/demo}
LIMIT=${LIMIT:-}
TLS=${TLS:-1}
API_PORT=${API_PORT:-8480}
pin() { if [ -n "$1" ]; then echo taskset -c "$1"; fi; }

rm -rf "$WORK"
mkdir -p "$WORK"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT

peak() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f s", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo "?"; }

scheme=http
if [ "$TLS" = 1 ]; then
  scheme=https
  "$BIN/fedpi" certs init --dir "$WORK/tls/ca" --name "FedPi demo CA" --days 30 >/dev/null
  "$BIN/fedpi" certs issue --ca "$WORK/tls/ca" --role aggregator --name aggregator --days 30 --out "$WORK/tls" >/dev/null
  "$BIN/fedpi" certs issue --ca "$WORK/tls/ca" --role admin --name operator --days 30 --out "$WORK/tls" >/dev/null
  for i in 1 2 3; do
    "$BIN/fedpi" certs issue --ca "$WORK/tls/ca" --role worker --name "worker-$i" --ip 127.0.0.1 --days 30 --out "$WORK/tls" >/dev/null
  done
fi

splits=(0-3 4-6 7-9)
for i in 1 2 3; do
  args=(--name "worker-$i" --listen 127.0.0.1:0 --port-file "$WORK/worker-$i.port" --model "$MODEL"
        --data "$DATA" --classes "${splits[$((i - 1))]}" --state-dir "$WORK/worker-$i" --lanes 1)
  [ -n "$LIMIT" ] && args+=(--limit "$LIMIT")
  [ "$TLS" = 1 ] && args+=(--tls-cert "$WORK/tls/worker-$i.crt" --tls-key "$WORK/tls/worker-$i.key" --tls-ca "$WORK/tls/ca.crt")
  # shellcheck disable=SC2046
  $(pin "${WORKER_CPUS:-}") "$WORKER_BIN/fedpi-worker" "${args[@]}" >"$WORK/worker-$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1200); do
    [ -s "$WORK/worker-$i.port" ] && break
    kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { echo "worker-$i did not start:" >&2; tail -5 "$WORK/worker-$i.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$WORK/worker-$i.port" ] || { echo "worker-$i did not start listening within 120 s" >&2; exit 1; }
done

{
  echo "model = \"$MODEL\""
  echo "rounds = $ROUNDS"
  echo "min_nodes = 2"
  echo "round_timeout = 1800"
  echo "encoding = \"$ENCODING\""
  echo "test_data = \"$DATA\""
  echo "state_dir = \"$WORK/aggregator\""
  echo "listen = \"127.0.0.1:$API_PORT\""
  [ -z "${FLEET_EXTRA:-}" ] || printf '%s\n' "$FLEET_EXTRA"
  if [ "$TLS" = 1 ]; then
    printf '[tls]\ncert = "%s"\nkey = "%s"\nca = "%s"\n' "$WORK/tls/aggregator.crt" "$WORK/tls/aggregator.key" "$WORK/tls/ca.crt"
  fi
  for i in 1 2 3; do
    printf '[[nodes]]\nname = "worker-%s"\nurl = "%s://127.0.0.1:%s"\n' "$i" "$scheme" "$(cat "$WORK/worker-$i.port")"
  done
} >"$WORK/fleet.toml"

echo "3 workers on loopback (classes ${splits[*]}), $ROUNDS rounds, $( [ "$TLS" = 1 ] && echo "mutual TLS (throwaway CA in $WORK/tls)" || echo "plain HTTP"); logs in $WORK/*.log"
if [ "$TLS" = 1 ]; then
  echo "dashboard and API: https://127.0.0.1:$API_PORT/ with a client certificate, e.g."
  echo "  curl --cacert $WORK/tls/ca.crt --cert $WORK/tls/operator.crt --key $WORK/tls/operator.key --resolve aggregator:$API_PORT:127.0.0.1 https://aggregator:$API_PORT/api/v1/fleet"
  echo "  (TLS=0 make run serves it as plain HTTP on loopback, for a browser without the certificate)"
else
  echo "dashboard: http://127.0.0.1:$API_PORT/"
fi
# shellcheck disable=SC2046
$(pin "${AGGREGATOR_CPUS:-}") "$BIN/fedpi-aggregator" --config "$WORK/fleet.toml" --save "$WORK/final.safetensors" 2>"$WORK/aggregator.log"
for i in 1 2 3; do echo "worker-$i peak memory: $(peak "${pids[$((i - 1))]}"), CPU: $(cpu "${pids[$((i - 1))]}")"; done
echo "aggregator peak memory: $(grep -o "peak_memory=[0-9.]* MiB" "$WORK/aggregator.log" | cut -d= -f2), CPU: $(grep -o "cpu_seconds=[0-9.]*" "$WORK/aggregator.log" | cut -d= -f2) s"
stop
trap - EXIT
echo "stopped the workers; history: $WORK/aggregator/history.sqlite"
