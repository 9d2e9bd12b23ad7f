#!/usr/bin/env bash
# Installs or updates the FedPi worker on this board as a systemd service; run as root. Idempotent:
# running it again with the same options changes nothing, with new options rewrites the config and
# restarts the service.
#
#   sudo provisioning/install-worker.sh --name pi-1 --data /srv/mnist --classes 0-3 [--port 8470]
#        --cert pi-1.crt --key pi-1.key --ca ca.crt [--aggregator-ip 10.0.0.2] | --insecure
#        [--partition iid:1/3] [--limit N] [--binary PATH] [--no-start]
#   sudo provisioning/install-worker.sh --uninstall [--purge]     (--purge also removes config and state)
# With --cert/--key/--ca (fedpi certs) the worker serves mutual TLS; the key goes to
# /etc/fedpi/tls/worker.key (root only) and reaches the service as a systemd credential. A new
# certificate for the same key is taken with systemctl reload; anything else restarts the worker.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=provisioning/common.sh
. "$here/provisioning/common.sh"
name="" data="" classes="" partition="" limit="" port=8470 binary="" uninstall=0 purge=0 start=1
cert="" key="" ca="" insecure=0 aggregator_ip=""
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --classes) classes=$2; shift 2 ;;
    --partition) partition=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --cert) cert=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --ca) ca=$2; shift 2 ;;
    --insecure) insecure=1; shift ;;
    --aggregator-ip) aggregator_ip=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done
require_root
unit=/etc/systemd/system/fedpi-worker.service
dropins=/etc/systemd/system/fedpi-worker.service.d

if [ "$uninstall" = 1 ]; then
  remove_unit fedpi-worker.service /usr/local/bin/fedpi-worker "$dropins/tls.conf" "$dropins/network.conf"
  if [ "$purge" = 1 ]; then rm -rf /etc/fedpi/worker.toml /etc/fedpi/tls/worker.crt /etc/fedpi/tls/worker.key /var/lib/fedpi; fi
  echo "fedpi-worker removed$([ "$purge" = 1 ] && echo ", with its config and state" || echo "; config in /etc/fedpi and state in /var/lib/fedpi kept")"
  exit 0
fi

[ -n "$name" ] || { echo "--name is required (the node name the aggregator's fleet.toml uses)" >&2; exit 2; }
[ -n "$data" ] || { echo "--data is required (a folder of MNIST-format IDX files or of image class folders)" >&2; exit 2; }
[ -d "$data" ] || { echo "data folder $data does not exist" >&2; exit 2; }
case "$port" in ''|*[!0-9]*) echo "--port must be a number" >&2; exit 2 ;; esac
[ -n "$binary" ] || binary=$(first_executable "$here/.build/release/fedpi-worker" "$here/fedpi-worker" "$(command -v fedpi-worker || true)") || true
[ -n "$binary" ] && [ -x "$binary" ] || { echo "no fedpi-worker binary; build it (swift build -c release --product fedpi-worker) or pass --binary" >&2; exit 2; }
# the shared libraries it loads must be on this board (a binary built elsewhere does not bring them)
if command -v ldd >/dev/null 2>&1; then
  missing=$(ldd "$binary" 2>/dev/null | awk '/not found/ {printf "%s ", $1}')
  [ -z "$missing" ] || { echo "$binary cannot load ${missing}on this machine; install them: apt-get install libopenblas0-pthread zlib1g libsystemd0 libstb0 libstdc++6" >&2; exit 2; }
fi
tls=0
if [ -n "$cert$key$ca" ]; then
  [ -n "$cert" ] && [ -n "$key" ] && [ -n "$ca" ] || { echo "TLS needs all three of --cert, --key and --ca (made with fedpi certs)" >&2; exit 2; }
  for f in "$cert" "$key" "$ca"; do [ -r "$f" ] || { echo "cannot read $f" >&2; exit 2; }; done
  tls=1
elif [ "$insecure" != 1 ]; then
  echo "give the worker its certificate (--cert, --key, --ca; see README \"Security\"), or --insecure to serve plain HTTP to anyone on the network" >&2
  exit 2
fi

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
# keep a tls_deny list the operator edited (one line: tls_deny = ["…", "…"])
deny_line=$(grep -m1 '^tls_deny' /etc/fedpi/worker.toml 2>/dev/null || echo 'tls_deny = []')
{
  echo "# written by provisioning/install-worker.sh; rerun it to change these"
  echo "name = \"$name\""
  echo "listen = \"0.0.0.0:$port\""
  echo "data = \"$data\""
  [ -n "$classes" ] && echo "classes = \"$classes\""
  [ -n "$partition" ] && echo "partition = \"$partition\""
  [ -n "$limit" ] && echo "limit = $limit"
  echo "state_dir = \"/var/lib/fedpi\""
  if [ "$tls" = 1 ]; then
    echo "tls_cert = \"/etc/fedpi/tls/worker.crt\""
    echo "tls_ca = \"/etc/fedpi/tls/ca.crt\""
    echo "# the key comes as the systemd credential tls.key (fedpi-worker.service.d/tls.conf)"
    echo "$deny_line"
  else
    echo "insecure = true"
  fi
} >"$config"
install_if_changed "$config" /etc/fedpi/worker.toml 0644 "wrote /etc/fedpi/worker.toml"
rm -f "$config"
# TLS: certificate and CA readable by the service, the key by root only (systemd hands it over)
dropin=$(mktemp)
install -d -m 0755 /etc/fedpi/tls "$dropins"
if [ "$tls" = 1 ]; then
  # a new certificate alone (same key: fedpi certs sign of the same request) needs only a reload
  saved=$changed changed=0
  install_if_changed "$cert" /etc/fedpi/tls/worker.crt 0644 "installed /etc/fedpi/tls/worker.crt"
  certificate_changed=$changed changed=$saved
  install_if_changed "$ca" /etc/fedpi/tls/ca.crt 0644 "installed /etc/fedpi/tls/ca.crt"
  install_if_changed "$key" /etc/fedpi/tls/worker.key 0600 "installed /etc/fedpi/tls/worker.key (root only)"
  printf '[Service]\nLoadCredential=tls.key:/etc/fedpi/tls/worker.key\n' >"$dropin"
  install_if_changed "$dropin" "$dropins/tls.conf" 0644 "installed $dropins/tls.conf"
else
  certificate_changed=0
  [ -f "$dropins/tls.conf" ] && { rm -f "$dropins/tls.conf"; changed=1; }
fi
# only the aggregator (and this board) may reach the worker
if [ -n "$aggregator_ip" ]; then
  printf '[Service]\nIPAddressDeny=any\nIPAddressAllow=localhost %s\n' "$aggregator_ip" >"$dropin"
  install_if_changed "$dropin" "$dropins/network.conf" 0644 "installed $dropins/network.conf (IPAddressAllow=$aggregator_ip)"
elif [ -f "$dropins/network.conf" ]; then
  rm -f "$dropins/network.conf"; changed=1
fi
rm -f "$dropin"
# the unit
install_if_changed "$here/systemd/fedpi-worker.service" "$unit" 0644 "installed $unit"
if command -v runuser >/dev/null && ! runuser -u fedpi -- test -r "$data"; then
  echo "warning: user fedpi cannot read $data; make it readable (chmod o+rx, or a group)" >&2
fi

if have_systemd && [ "$start" = 1 ]; then
  if [ "$changed" = 0 ] && [ "$certificate_changed" = 1 ] && systemctl is-active --quiet fedpi-worker.service; then
    systemctl reload fedpi-worker.service
    echo "fedpi-worker reloaded its certificate (the running task goes on)"
  fi
  start_unit fedpi-worker.service
else
  echo "systemd is not running here (or --no-start): installed but not started"
fi
cat <<EOT
Check it:
  systemctl status fedpi-worker          # state and the STATUS line (round, progress)
  journalctl -u fedpi-worker -f          # its log
EOT
scheme=http
if [ "$tls" = 1 ]; then
  scheme=https
  echo "  curl -s --cacert /etc/fedpi/tls/ca.crt --cert OBSERVER.crt --key OBSERVER.key https://$name:$port/v1/node --resolve $name:$port:127.0.0.1"
else
  echo "  curl -s http://localhost:$port/v1/node   # node, dataset, state, board health"
fi
cat <<EOT
In the aggregator's fleet.toml:
  [[nodes]]
  name = "$name"
  url = "$scheme://$(hostname -I 2>/dev/null | awk '{print $1}' || echo THIS-HOST):$port"
EOT
