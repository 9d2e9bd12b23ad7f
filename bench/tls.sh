#!/usr/bin/env bash
# The loopback federation of `make run` over mutual TLS and over plain HTTP at the same time, same
# seed and data: this VM's speed drifts by 10-20 % over minutes, more than TLS costs, so the two
# fleets run side by side and share whatever the machine does (each gets about half of it). Then the
# cost of one TLS handshake against a worker. Prints seconds per round (dispatch to new global model,
# the table's column), the CPU seconds of the workers and of the aggregator, each worker's peak
# memory, and the handshake time.
#   ROUNDS=20 bench/tls.sh
set -euo pipefail
pids=()
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-20}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=bench/out/tls
mkdir -p "$OUT"
./scripts/deps.sh
swift build -c release --product fedpi-worker 2>&1 | grep -E "error|Build" | tail -1 >&2
swift build --product fedpi-aggregator 2>&1 | grep -E "error|Build" | tail -1 >&2
swift build --product fedpi 2>&1 | grep -E "error|Build" | tail -1 >&2
rm -rf "$OUT"/run-*
for tls in 1 0; do
  TLS=$tls WORK="$OUT/run-$tls" WORKER_BIN=.build/release BIN=.build/debug DATA="$DATA" ROUNDS="$ROUNDS" ./scripts/demo.sh \
    >"$OUT/run-$tls.txt" 2>&1 &
  pids+=($!)
done
echo "two fleets of 3 workers side by side (mutual TLS and plain HTTP), $ROUNDS rounds; tables in $OUT/run-1.txt and run-0.txt" >&2
for pid in "${pids[@]}"; do wait "$pid"; done

# handshakes: a worker with a small shard, 200 new connections with the aggregator's certificate
W="$OUT/handshake"
rm -rf "$W"; mkdir -p "$W"
.build/debug/fedpi certs init --dir "$W/ca" >/dev/null
.build/debug/fedpi certs issue --ca "$W/ca" --role worker --name hs --out "$W" >/dev/null
.build/debug/fedpi certs issue --ca "$W/ca" --role aggregator --name aggregator --out "$W" >/dev/null
.build/release/fedpi-worker --name hs --listen 127.0.0.1:0 --port-file "$W/port" --data "$DATA" --limit 1000 --state-dir "$W/state" \
  --tls-cert "$W/hs.crt" --tls-key "$W/hs.key" --tls-ca "$W/ca/ca.crt" 2>"$W/worker.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do [ -s "$W/port" ] && break; sleep 0.1; done
python3 - "$W" "$(cat "$W/port")" >"$OUT/handshake.txt" <<'PY'
import socket, ssl, sys, time
d, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(d + "/ca/ca.crt")
ctx.load_cert_chain(d + "/aggregator.crt", d + "/aggregator.key")
times = []
for _ in range(200):
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="hs") as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: hs\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
    times.append(time.perf_counter() - t)
times.sort()
print(f"handshake + GET /v1/health over a new TLS 1.3 connection: median {times[100]*1000:.2f} ms, p90 {times[180]*1000:.2f} ms (200 connections, Python ssl client)")
PY
kill $pid; trap - EXIT
python3 - "$OUT" <<'PY'
import re, sys
out = sys.argv[1]
res = {}
for tls in ("1", "0"):
    text = open(f"{out}/run-{tls}.txt").read()
    rows = [l.split() for l in text.splitlines() if re.match(r"^\s+\d+\s+\d+\s+[\d.]+%", l)]
    secs = [float(r[4]) for r in rows if int(r[0]) > 0]
    mem = re.findall(r"worker-\d peak memory: ([\d.]+) MiB", text)
    cpu = [float(x) for x in re.findall(r"worker-\d peak memory: [\d.]+ MiB, CPU: ([\d.]+) s", text)]
    agg = re.findall(r"aggregator peak memory: .*, CPU: ([\d.]+) s", text)
    res[tls] = (sum(secs) / len(secs), sum(cpu), float(agg[0]) if agg else float("nan"))
    print(f"{'mutual TLS' if tls == '1' else 'plain HTTP'}: {res[tls][0]:.3f} s per round (dispatch to global model, mean of {len(secs)}), "
          f"workers {res[tls][1]:.1f} CPU s, aggregator {res[tls][2]:.1f} CPU s, final accuracy {rows[-1][2] if rows else '?'}, "
          f"worker peak memory {', '.join(mem)} MiB")
print(f"TLS / HTTP: {res['1'][0] / res['0'][0]:.4f} (round seconds), {res['1'][1] / res['0'][1]:.4f} (workers' CPU seconds), "
      f"{res['1'][2] / res['0'][2]:.4f} (aggregator's CPU seconds)")
PY
cat "$OUT/handshake.txt"
