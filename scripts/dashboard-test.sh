#!/usr/bin/env bash
# The operator's view, end to end, part of `make test`:
#  1. a fleet on loopback (3 workers, small shards, the aggregator serving its dashboard) and the
#     dashboard in Debian's chromium through selenium (tests-python/dashboard_test.py): nodes online,
#     the chart growing, pause/resume, a killed worker offline within 5 s, predictions of an uploaded
#     test image and of a drawing; screenshots in .build/dashboard-test/;
#  2. both /metrics outputs through promtool check metrics (Debian's prometheus package);
#  3. SIGTERM: the aggregator exits 0 within 10 s;
#  4. the API under mutual TLS: no certificate, observer, admin and worker certificates.
# Installs chromium, chromium-driver and prometheus (Debian) and selenium (PyPI, into .build/pyenv-browser).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
WORK=.build/dashboard-test
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
missing=()
for p in chromium chromium-driver prometheus curl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
venv=.build/pyenv-browser
if ! "$venv/bin/python" -c "import selenium" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check selenium
fi
for p in fedpi-worker fedpi-aggregator fedpi; do swift build --product "$p" >/dev/null; done
BIN=$(swift build --show-bin-path)

rm -rf "$WORK"
mkdir -p "$WORK"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
fail() { echo "FAIL: $*" >&2; tail -20 "$WORK"/aggregator.log >&2 || true; exit 1; }
wait_file() { for _ in $(seq 1200); do [ -s "$1" ] && return 0; sleep 0.1; done; fail "no $1 within 120 s"; }

splits=(0-3 4-6 7-9)
for i in 1 2 3; do
  "$BIN/fedpi-worker" --name "worker-$i" --listen 127.0.0.1:0 --port-file "$WORK/worker-$i.port" --data "$DATA" \
    --classes "${splits[$((i - 1))]}" --limit 1500 --lanes 1 --state-dir "$WORK/worker-$i" >"$WORK/worker-$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do wait_file "$WORK/worker-$i.port"; done
{
  echo 'rounds = 1000'
  echo 'min_nodes = 2'
  echo 'round_timeout = 120'
  echo 'unreachable_grace = 3'
  echo 'probe_timeout = 1'
  echo 'max_backoff = 2'
  echo "test_data = \"$DATA\""
  echo 'test_limit = 500'
  echo "state_dir = \"$WORK/aggregator\""
  echo 'listen = "127.0.0.1:0"'
  echo 'class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]'
  for i in 1 2 3; do printf '[[nodes]]\nname = "worker-%s"\nurl = "http://127.0.0.1:%s"\n' "$i" "$(cat "$WORK/worker-$i.port")"; done
} >"$WORK/fleet.toml"
"$BIN/fedpi-aggregator" --config "$WORK/fleet.toml" --port-file "$WORK/api.port" >"$WORK/rounds.txt" 2>"$WORK/aggregator.log" &
agg=$!
pids+=("$agg")
wait_file "$WORK/api.port"
base="http://127.0.0.1:$(cat "$WORK/api.port")"
echo "dashboard at $base/ (screenshots in $WORK)"

"$venv/bin/python" tests-python/dashboard_test.py "$base" "$BIN/fedpi" "$DATA" "$WORK" "${pids[2]}" || fail "browser test"

curl -fsS "$base/metrics" >"$WORK/aggregator.metrics"
curl -fsS "http://127.0.0.1:$(cat "$WORK/worker-1.port")/metrics" >"$WORK/worker.metrics"
for m in aggregator worker; do
  promtool check metrics <"$WORK/$m.metrics" || fail "promtool check metrics on the $m's /metrics"
  echo "promtool: the $m's /metrics ($(grep -vc '^#' "$WORK/$m.metrics") samples) passes"
done
grep -q '^fedpi_rounds_completed_total [1-9]' "$WORK/aggregator.metrics" || fail "no completed rounds in /metrics"
# every series the shipped Grafana dashboard plots is one of the two outputs
python3 - "$WORK" <<'PY' || fail "provisioning/grafana-dashboard.json plots a series neither /metrics has"
import json, re, sys
have = open(sys.argv[1] + "/aggregator.metrics").read() + open(sys.argv[1] + "/worker.metrics").read()
d = json.load(open("provisioning/grafana-dashboard.json"))
names = {n for p in d["panels"] for t in p["targets"] for n in re.findall(r"\b(fedpi_\w+|process_\w+)", t["expr"])}
missing = sorted(n for n in names if "\n" + n not in "\n" + have.replace("# TYPE ", "").replace("# HELP ", ""))
print(f"grafana: {len(d['panels'])} panels over {len(names)} series, all exported" if not missing else f"missing: {missing}")
sys.exit(1 if missing else 0)
PY
grep -q '^fedpi_node_up{node="worker-3"} 0' "$WORK/aggregator.metrics" || fail "the killed worker is not down in /metrics"

start=$(date +%s%N)
kill -TERM "$agg"
rc=0; wait "$agg" || rc=$?
took=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$rc" -eq 0 ] || fail "the aggregator exited $rc on SIGTERM"
[ "$took" -lt 10000 ] || fail "SIGTERM took $took ms"
grep -q "stopped on SIGTERM" "$WORK/aggregator.log" || fail "no graceful stop in the log"
echo "SIGTERM: the aggregator exited 0 in $took ms"

# the API under mutual TLS: the nodes need not exist for it to answer
tls="$PWD/$WORK/tls"
"$BIN/fedpi" certs init --dir "$tls/ca" --name "dashboard test CA" --days 2 >/dev/null
for r in aggregator observer admin worker; do "$BIN/fedpi" certs issue --ca "$tls/ca" --role "$r" --name "$r-1" --days 2 --out "$tls" >/dev/null; done
{
  echo "state_dir = \"$WORK/tls-aggregator\""
  echo 'listen = "127.0.0.1:0"'
  printf '[tls]\ncert = "%s"\nkey = "%s"\nca = "%s"\n' "$tls/aggregator-1.crt" "$tls/aggregator-1.key" "$tls/ca/ca.crt"
  printf '[[nodes]]\nname = "pi-1"\nurl = "https://127.0.0.1:9"\n'
} >"$WORK/tls-fleet.toml"
"$BIN/fedpi-aggregator" --config "$WORK/tls-fleet.toml" --port-file "$WORK/tls-api.port" >/dev/null 2>"$WORK/tls-aggregator.log" &
pids+=($!)
wait_file "$WORK/tls-api.port"
url="https://aggregator-1:$(cat "$WORK/tls-api.port")"
call() {  # ROLE METHOD PATH [BODY] -> HTTP status (000: no TLS session)
  local who=$1; shift
  local args=(-s -o /dev/null -w '%{http_code}' --resolve "aggregator-1:$(cat "$WORK/tls-api.port"):127.0.0.1" --cacert "$tls/ca/ca.crt")
  [ "$who" != none ] && args+=(--cert "$tls/$who-1.crt" --key "$tls/$who-1.key")
  [ $# -gt 2 ] && args+=(-H 'content-type: application/json' -d "$3")
  curl "${args[@]}" -X "$1" "$url$2" || true
}
check() { local got; got=$(call "$@"); [ "$got" = "${EXPECT}" ] || fail "TLS API: $* answered $got, expected $EXPECT"; echo "TLS API: $1 $2 $3 -> $got"; }
EXPECT=000 check none GET /api/v1/fleet
EXPECT=200 check observer GET /api/v1/fleet
EXPECT=200 check observer GET /metrics
EXPECT=403 check observer POST /api/v1/control '{"action":"pause"}'
EXPECT=403 check worker GET /api/v1/fleet
EXPECT=200 check admin POST /api/v1/control '{"action":"pause"}'
# the shipped Prometheus config, pointed at these certificates, passes promtool check config
sed -e "s#/etc/prometheus/fedpi/ca.crt#$tls/ca/ca.crt#" -e "s#/etc/prometheus/fedpi/prometheus.crt#$tls/observer-1.crt#" \
    -e "s#/etc/prometheus/fedpi/prometheus.key#$tls/observer-1.key#" provisioning/prometheus.yml >"$WORK/prometheus.yml"
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "provisioning/prometheus.yml: promtool check config"
echo "promtool: provisioning/prometheus.yml passes check config"
echo "dashboard test passed"
