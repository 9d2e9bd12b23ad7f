#!/usr/bin/env bash
# Installs or updates the FedPi aggregator as a systemd service on the workstation; run as root.
# Idempotent. The fleet file goes to /etc/fedpi/fleet.toml (start from provisioning/fleet.example.toml);
# history and checkpoints live in /var/lib/fedpi-aggregator.
#
#   sudo provisioning/install-aggregator.sh --fleet my-fleet.toml [--binary PATH] [--no-start]
#   sudo provisioning/install-aggregator.sh --uninstall [--purge]
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
fleet="" binary="" uninstall=0 purge=0 start=1
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --fleet) fleet=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo $0 …)" >&2; exit 1; }
have_systemd() { [ -d /run/systemd/system ]; }
unit=/etc/systemd/system/fedpi-aggregator.service

if [ "$uninstall" = 1 ]; then
  if have_systemd; then systemctl disable --now fedpi-aggregator.service 2>/dev/null || true; fi
  rm -f "$unit" /usr/local/bin/fedpi-aggregator
  if [ "$purge" = 1 ]; then rm -rf /etc/fedpi/fleet.toml /var/lib/fedpi-aggregator; fi
  if have_systemd; then systemctl daemon-reload; fi
  echo "fedpi-aggregator removed"
  exit 0
fi

[ -n "$fleet" ] && [ -f "$fleet" ] || { echo "--fleet FILE is required (see provisioning/fleet.example.toml)" >&2; exit 2; }
if [ -z "$binary" ]; then
  for b in "$here/.build/release/fedpi-aggregator" "$here/.build/debug/fedpi-aggregator" "$(command -v fedpi-aggregator || true)"; do
    [ -n "$b" ] && [ -x "$b" ] && { binary=$b; break; }
  done
fi
[ -n "$binary" ] && [ -x "$binary" ] || { echo "no fedpi-aggregator binary; build it or pass --binary" >&2; exit 2; }

id fedpi >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /var/lib/fedpi-aggregator --shell /usr/sbin/nologin fedpi
changed=0
install -d -m 0755 /etc/fedpi
cmp -s "$binary" /usr/local/bin/fedpi-aggregator || { install -m 0755 "$binary" /usr/local/bin/fedpi-aggregator; changed=1; }
cmp -s "$fleet" /etc/fedpi/fleet.toml || { install -m 0644 "$fleet" /etc/fedpi/fleet.toml; changed=1; }
cmp -s "$here/systemd/fedpi-aggregator.service" "$unit" || { install -m 0644 "$here/systemd/fedpi-aggregator.service" "$unit"; changed=1; }
if have_systemd && [ "$start" = 1 ]; then
  systemctl daemon-reload
  systemctl enable fedpi-aggregator.service >/dev/null 2>&1
  if [ "$changed" = 1 ] || ! systemctl is-active --quiet fedpi-aggregator.service; then systemctl restart fedpi-aggregator.service; fi
  echo "fedpi-aggregator is $(systemctl is-active fedpi-aggregator.service) and enabled at boot"
else
  echo "systemd is not running here (or --no-start): installed but not started"
fi
cat <<EOT
Check it:
  systemctl status fedpi-aggregator      # the STATUS line: round, nodes, accuracy
  journalctl -u fedpi-aggregator -f      # round events, node online/offline, rejected updates
  sqlite3 /var/lib/fedpi-aggregator/history.sqlite 'select round, attempt, completed, accuracy from rounds'
EOT
