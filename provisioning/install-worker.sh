#!/usr/bin/env bash
# Installs or updates the FedPi worker on this board as a systemd service; run as root. Idempotent:
# running it again with the same options changes nothing, with new options rewrites the config and
# restarts the service.
#
#   sudo provisioning/install-worker.sh --name pi-1 --data /srv/mnist --classes 0-3 [--port 8470]
#        [--partition iid:1/3] [--limit N] [--binary PATH] [--no-start]
#   sudo provisioning/install-worker.sh --uninstall [--purge]     (--purge also removes config and state)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=provisioning/common.sh
. "$here/provisioning/common.sh"
name="" data="" classes="" partition="" limit="" port=8470 binary="" uninstall=0 purge=0 start=1
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --classes) classes=$2; shift 2 ;;
    --partition) partition=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done
require_root
unit=/etc/systemd/system/fedpi-worker.service

if [ "$uninstall" = 1 ]; then
  remove_unit fedpi-worker.service /usr/local/bin/fedpi-worker
  if [ "$purge" = 1 ]; then rm -rf /etc/fedpi/worker.toml /var/lib/fedpi; fi
  echo "fedpi-worker removed$([ "$purge" = 1 ] && echo ", with its config and state" || echo "; config in /etc/fedpi and state in /var/lib/fedpi kept")"
  exit 0
fi

[ -n "$name" ] || { echo "--name is required (the node name the aggregator's fleet.toml uses)" >&2; exit 2; }
[ -n "$data" ] || { echo "--data is required (a folder of MNIST-format IDX files)" >&2; exit 2; }
[ -d "$data" ] || { echo "data folder $data does not exist" >&2; exit 2; }
case "$port" in ''|*[!0-9]*) echo "--port must be a number" >&2; exit 2 ;; esac
[ -n "$binary" ] || binary=$(first_executable "$here/.build/release/fedpi-worker" "$here/fedpi-worker" "$(command -v fedpi-worker || true)") || true
[ -n "$binary" ] && [ -x "$binary" ] || { echo "no fedpi-worker binary; build it (swift build -c release --product fedpi-worker) or pass --binary" >&2; exit 2; }

changed=0
# the service's user
if ! id fedpi >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /var/lib/fedpi --shell /usr/sbin/nologin fedpi
  echo "created system user fedpi"
fi
# the binary
install_if_changed "$binary" /usr/local/bin/fedpi-worker 0755 "installed /usr/local/bin/fedpi-worker"
# the config
install -d -m 0755 /etc/fedpi
config=$(mktemp)
{
  echo "# written by provisioning/install-worker.sh; rerun it to change these"
  echo "name = \"$name\""
  echo "listen = \"0.0.0.0:$port\""
  echo "data = \"$data\""
  [ -n "$classes" ] && echo "classes = \"$classes\""
  [ -n "$partition" ] && echo "partition = \"$partition\""
  [ -n "$limit" ] && echo "limit = $limit"
  echo "state_dir = \"/var/lib/fedpi\""
} >"$config"
install_if_changed "$config" /etc/fedpi/worker.toml 0644 "wrote /etc/fedpi/worker.toml"
rm -f "$config"
# the unit
install_if_changed "$here/systemd/fedpi-worker.service" "$unit" 0644 "installed $unit"
if command -v runuser >/dev/null && ! runuser -u fedpi -- test -r "$data"; then
  echo "warning: user fedpi cannot read $data; make it readable (chmod o+rx, or a group)" >&2
fi

if have_systemd && [ "$start" = 1 ]; then
  start_unit fedpi-worker.service
else
  echo "systemd is not running here (or --no-start): installed but not started"
fi
cat <<EOT
Check it:
  systemctl status fedpi-worker          # state and the STATUS line (round, progress)
  journalctl -u fedpi-worker -f          # its log
  curl -s http://localhost:$port/v1/node   # node, dataset, state, board health
In the aggregator's fleet.toml:
  [[nodes]]
  name = "$name"
  url = "http://$(hostname -I 2>/dev/null | awk '{print $1}' || echo THIS-HOST):$port"
EOT
