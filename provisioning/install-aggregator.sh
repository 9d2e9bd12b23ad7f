#!/usr/bin/env bash
# Installs or updates the FedPi aggregator as a systemd service on the workstation; run as root.
# Idempotent. The fleet file goes to /etc/fedpi/fleet.toml (start from provisioning/fleet.example.toml);
# history and checkpoints live in /var/lib/fedpi-aggregator.
#
#   sudo provisioning/install-aggregator.sh --fleet my-fleet.toml [--cert F --key F --ca F] [--binary PATH] [--no-start]
#   sudo provisioning/install-aggregator.sh --uninstall [--purge]
# With --cert/--key/--ca (fedpi certs issue --role aggregator) the certificate and CA go to
# /etc/fedpi/tls and the key to /etc/fedpi/tls/aggregator.key (root only), handed to the service as
# the systemd credential tls.key; the fleet file's [tls] then needs only cert and ca:
#   [tls]
#   cert = "/etc/fedpi/tls/aggregator.crt"
#   ca = "/etc/fedpi/tls/ca.crt"
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=provisioning/common.sh
. "$here/provisioning/common.sh"
fleet="" binary="" uninstall=0 purge=0 start=1 cert="" key="" ca=""
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --fleet) fleet=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --cert) cert=$2; shift 2 ;;
    --key) key=$2; shift 2 ;;
    --ca) ca=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done
require_root
unit=/etc/systemd/system/fedpi-aggregator.service
dropins=/etc/systemd/system/fedpi-aggregator.service.d

if [ "$uninstall" = 1 ]; then
  remove_unit fedpi-aggregator.service /usr/local/bin/fedpi-aggregator "$dropins/tls.conf"
  if [ "$purge" = 1 ]; then rm -rf /etc/fedpi/fleet.toml /etc/fedpi/tls/aggregator.crt /etc/fedpi/tls/aggregator.key /var/lib/fedpi-aggregator; fi
  echo "fedpi-aggregator removed"
  exit 0
fi

[ -n "$fleet" ] && [ -f "$fleet" ] || { echo "--fleet FILE is required (see provisioning/fleet.example.toml)" >&2; exit 2; }
[ -n "$binary" ] || binary=$(first_executable "$here/.build/release/fedpi-aggregator" "$here/.build/debug/fedpi-aggregator" \
  "$(command -v fedpi-aggregator || true)") || true
[ -n "$binary" ] && [ -x "$binary" ] || { echo "no fedpi-aggregator binary; build it or pass --binary" >&2; exit 2; }

id fedpi >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/fedpi-aggregator --shell /usr/sbin/nologin fedpi
changed=0
install -d -m 0755 /etc/fedpi
install_if_changed "$binary" /usr/local/bin/fedpi-aggregator 0755
install_if_changed "$fleet" /etc/fedpi/fleet.toml 0644
install_if_changed "$here/systemd/fedpi-aggregator.service" "$unit" 0644
if [ -n "$cert$key$ca" ]; then
  [ -n "$cert" ] && [ -n "$key" ] && [ -n "$ca" ] || { echo "TLS needs all three of --cert, --key and --ca" >&2; exit 2; }
  install -d -m 0755 /etc/fedpi/tls "$dropins"
  install_if_changed "$cert" /etc/fedpi/tls/aggregator.crt 0644 "installed /etc/fedpi/tls/aggregator.crt"
  install_if_changed "$ca" /etc/fedpi/tls/ca.crt 0644 "installed /etc/fedpi/tls/ca.crt"
  install_if_changed "$key" /etc/fedpi/tls/aggregator.key 0600 "installed /etc/fedpi/tls/aggregator.key (root only)"
  dropin=$(mktemp)
  printf '[Service]\nLoadCredential=tls.key:/etc/fedpi/tls/aggregator.key\n' >"$dropin"
  install_if_changed "$dropin" "$dropins/tls.conf" 0644 "installed $dropins/tls.conf"
  rm -f "$dropin"
  grep -q '^\[tls\]' /etc/fedpi/fleet.toml || echo "warning: /etc/fedpi/fleet.toml has no [tls] section; add cert and ca (see --help)" >&2
fi
if have_systemd && [ "$start" = 1 ]; then
  start_unit fedpi-aggregator.service
else
  echo "systemd is not running here (or --no-start): installed but not started"
fi
cat <<EOT
Check it:
  systemctl status fedpi-aggregator      # the STATUS line: round, nodes, accuracy
  journalctl -u fedpi-aggregator -f      # round events, node online/offline, rejected updates
  sqlite3 /var/lib/fedpi-aggregator/history.sqlite 'select round, attempt, completed, accuracy from rounds'
EOT
