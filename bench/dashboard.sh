#!/usr/bin/env bash
# The operator's view under load, on the loopback federation of `make run` (3 workers, full shards,
# plain HTTP so a browser needs no certificate): the dashboard stays open in headless chromium for the
# whole run, and wrk (2 threads, 20 connections, 20 s) hits the API in windows that alternate with
# quiet ones (ON_SECONDS each). Prints the aggregator's and the workers' peak memory, wrk's latency
# percentiles per window, and seconds per round for rounds run entirely under load against rounds run
# entirely in quiet windows (same run, so the VM's drift hits both).
#   ROUNDS=20 ENDPOINT=/api/v1/fleet BIN=.build/debug PIN=1 bench/dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-20}
ENDPOINT=${ENDPOINT:-/api/v1/fleet}
BIN=${BIN:-.build/debug}
ON_SECONDS=${ON_SECONDS:-40}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
PORT=${PORT:-8481}
OUT=bench/out/dashboard
rm -rf "$OUT"
mkdir -p "$OUT"
./scripts/deps.sh
for p in wrk chromium; do
  command -v "$p" >/dev/null || { apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 || sudo apt-get install -y -qq --no-install-recommends "$p" >/dev/null; }
done
swift build -c release --product fedpi-worker 2>&1 | grep -E "error|Build" | tail -1 >&2
for p in fedpi-aggregator fedpi; do
  if [ "$BIN" = .build/release ]; then swift build -c release --product "$p"; else swift build --product "$p"; fi 2>&1 | grep -E "error|Build" | tail -1 >&2
done

# the boards, the workstation and the browsers are different machines: the workers get CPU 1, the
# aggregator CPU 0; wrk and the browser stand in for other machines, so they share CPU 0 at the lowest
# priority (nice 19) and take what the aggregator leaves (PIN=0: no pinning, all share both cores)
if [ "${PIN:-1}" = 1 ]; then export WORKER_CPUS=1 AGGREGATOR_CPUS=0; cpu0="nice -n 19 taskset -c 0"; else cpu0=""; fi
TLS=0 API_PORT=$PORT WORK="$OUT/run" WORKER_BIN=.build/release BIN="$BIN" DATA="$DATA" ROUNDS="$ROUNDS" ./scripts/demo.sh >"$OUT/run.txt" 2>&1 &
demo=$!
base="http://127.0.0.1:$PORT"
for _ in $(seq 600); do curl -fs "$base/api/v1/fleet" >/dev/null 2>&1 && break; sleep 0.2; done
$cpu0 chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage "$base/" >"$OUT/chromium.log" 2>&1 &
browser=$!
echo "fleet of 3 workers, $ROUNDS rounds, dashboard open in chromium; wrk on $ENDPOINT in ${ON_SECONDS}-s windows" >&2
: >"$OUT/windows.txt"
# windows cycle: wrk, quiet, busy loops (the same CPU as wrk, no FedPi code: the machine's own
# interference between its two CPUs, the control), quiet
kinds=(wrk quiet busy quiet)
w=0
while kill -0 "$demo" 2>/dev/null; do
  kind=${kinds[$((w % 4))]}
  start=$(date +%s.%N)
  case $kind in
    wrk)
      n=0
      while [ "$n" -lt $((ON_SECONDS / 20)) ] && kill -0 "$demo" 2>/dev/null; do
        $cpu0 wrk -t2 -c20 -d20s --latency "$base$ENDPOINT" >"$OUT/wrk-$(date +%s).txt" 2>&1 || true
        n=$((n + 1))
      done ;;
    busy)
      for _ in 1 2; do $cpu0 timeout "$ON_SECONDS" sh -c 'while :; do :; done' & done
      wait_busy=$(jobs -p | tail -2)
      # shellcheck disable=SC2086
      wait $wait_busy 2>/dev/null || true ;;
    quiet) sleep "$ON_SECONDS" ;;
  esac
  echo "$kind $start $(date +%s.%N)" >>"$OUT/windows.txt"
  w=$((w + 1))
done
wait "$demo" || true
kill "$browser" 2>/dev/null || true
cat "$OUT/run.txt"
python3 - "$OUT" <<'EOF'
import glob, re, sqlite3, sys, datetime
out = sys.argv[1]
windows = [(float(l.split()[1]), float(l.split()[2]), l.split()[0]) for l in open(f"{out}/windows.txt")]
p99 = []
for f in sorted(glob.glob(f"{out}/wrk-*.txt")):
    t = open(f).read()
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
    r = re.search(r"Requests/sec:\s+([\d.]+)", t)
    if m and r:
        v = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
        p99.append(v)
        lat = re.search(r"50%\s+(\S+)\s+75%\s+(\S+)\s+90%\s+(\S+)\s+99%\s+(\S+)", " ".join(t.split()))
        print(f"wrk window: {float(r.group(1)):8.0f} requests/s, latency p50 {lat.group(1)}, p90 {lat.group(3)}, p99 {lat.group(4)}")
if p99:
    print(f"wrk p99 over {len(p99)} windows: worst {max(p99):.1f} ms, median {sorted(p99)[len(p99)//2]:.1f} ms")
db = sqlite3.connect(f"{out}/run/aggregator/history.sqlite")
by = {"wrk": [], "quiet": [], "busy": []}
for rnd, fin, secs in db.execute("SELECT round, finished_at, seconds FROM rounds WHERE completed = 1 AND round > 0"):
    end = datetime.datetime.fromisoformat(fin.replace("Z", "+00:00")).timestamp()
    start = end - secs
    for kind in by:
        inside = sum(max(0, min(end, b) - max(start, a)) for a, b, k in windows if k == kind)
        if secs > 0 and inside / secs >= 0.95:
            by[kind].append(secs)
mean = lambda v: sum(v) / len(v)
for kind, v in by.items():
    print(f"seconds per round, rounds entirely in {kind} windows: " + (f"{mean(v):.2f} over {len(v)} rounds ({', '.join(f'{x:.1f}' for x in v)})" if v else "none"))
for kind in ("wrk", "busy"):
    if by[kind] and by["quiet"]:
        print(f"ratio {kind} / quiet: {mean(by[kind]) / mean(by['quiet']):.3f}")
EOF
