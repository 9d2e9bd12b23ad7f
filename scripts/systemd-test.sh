#!/usr/bin/env bash
# The worker's unit in a real systemd: Debian bookworm booted with systemd-nspawn (the recipe in
# ../shared/recipes/systemd-nspawn.sh), the worker installed with provisioning/install-worker.sh, then:
#   (a) `systemctl start` stays `activating` until the worker sends READY=1 (port bound)
#   (b) the STATUS line shows in `systemctl status`; /v1/node answers from inside the container
#   (c) SIGSTOP: the watchdog kills and restarts it (NRestarts=1)
#   (d) SIGKILL: Restart=on-failure restarts it (NRestarts=2)
#   (e) enabled + container reboot: it is back
# Needs root, systemd-nspawn and debootstrap (installed here if missing) and Debian's mirror once
# (the rootfs is cached in .build/nspawn). Where nspawn truly cannot run it prints SKIP and the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-$PWD/.build/nspawn}
ROOT=$BASE/root
MACHINE=fedpi-ct
CACHE=$BASE/rootfs-bookworm.tar.zst
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*"; }
skip() { echo "SKIP systemd test: $*"; exit 0; }
die() { say "FAIL: $*"; [ -n "${LEADER:-}" ] && in_ct journalctl -b -u fedpi-worker --no-pager | tail -30; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root (systemd-nspawn)"
if ! command -v systemd-nspawn >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd-container debootstrap zstd >/dev/null 2>&1 \
    || skip "cannot install systemd-container and debootstrap"
fi
bin=$(swift build --show-bin-path)
swift build --product fedpi-worker 2>&1 | grep -E "error" && die "build failed"
[ -x "$bin/fedpi-worker" ] || die "no worker binary at $bin"

if [ ! -x "$ROOT/lib/systemd/systemd" ]; then
  rm -rf "$ROOT"; mkdir -p "$ROOT"
  if [ -f "$CACHE" ]; then
    tar -C "$ROOT" --zstd -xpf "$CACHE"
  else
    MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
             awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
    say "debootstrap bookworm from $MIRROR (once; cached in $CACHE)"
    debootstrap --variant=minbase \
      --include=systemd,systemd-sysv,dbus,python3-minimal,libopenblas0-pthread,zlib1g,libstdc++6,libgfortran5 \
      bookworm "$ROOT" "$MIRROR" >"$BASE.debootstrap.log" 2>&1 || skip "debootstrap failed (see $BASE.debootstrap.log)"
    echo "$MACHINE" >"$ROOT/etc/hostname"
    tar -C "$ROOT" --zstd -cpf "$CACHE" .
  fi
fi
say "rootfs ready"

# the worker, its unit and config, installed by the provisioning script inside the container; the
# repository, the Swift runtime and the data are bind-mounted read-only
mkdir -p "$ROOT/src" "$ROOT/opt/swift" "$ROOT/data"
NSPAWN=; LEADER=
boot() {
  systemd-nspawn --boot -D "$ROOT" -M "$MACHINE" --register=no --keep-unit --console=pipe \
    --bind-ro="$PWD:/src" --bind-ro=/opt/swift --bind-ro="$DATA:/data" </dev/null >>"$BASE.nspawn.log" 2>&1 &
  NSPAWN=$!
  LEADER=
  for _ in $(seq 600); do
    LEADER=$(pgrep -P "$NSPAWN" -f 'lib/systemd/systemd' || true)
    [ -n "$LEADER" ] && nsenter -t "$LEADER" -a test -S /run/systemd/private 2>/dev/null && break
    kill -0 "$NSPAWN" 2>/dev/null || skip "systemd-nspawn exited at once: $(tail -3 "$BASE.nspawn.log" | tr '\n' ' ')"
    sleep 0.05
  done
  [ -n "$LEADER" ] || skip "the container did not boot within 30 s (see $BASE.nspawn.log)"
  in_ct systemctl is-system-running --wait >/dev/null 2>&1 || true
  say "container booted (PID 1 = host pid $LEADER)"
}
in_ct() { nsenter -t "$LEADER" -a "$@"; }
shutdown_ct() { in_ct systemctl --no-block "$1" || true; wait "$NSPAWN" || true; }
prop() { in_ct systemctl show -p "$1" --value fedpi-worker; }
wait_for() {  # seconds, description, condition…
  local n=$(($1 * 10)) what=$2; shift 2
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  die "timed out waiting for $what ($(in_ct systemctl show -p ActiveState -p SubState -p NRestarts -p StatusText fedpi-worker | paste -sd' '))"
}
active() { [ "$(in_ct systemctl is-active fedpi-worker || true)" = active ]; }
restarts_at_least() { [ "$(prop NRestarts)" -ge "$1" ] && active; }
trap '[ -n "${NSPAWN:-}" ] && kill "$NSPAWN" 2>/dev/null; true' EXIT

boot
in_ct /src/provisioning/install-worker.sh --uninstall --purge >/dev/null
in_ct /src/provisioning/install-worker.sh --name ct-1 --data /data --classes 0-3 --binary "/src/${bin#"$PWD"/}/fedpi-worker" --no-start \
  | sed 's/^/    /'
# a shorter watchdog for the test (the shipped unit says 30 s)
mkdir -p "$ROOT/etc/systemd/system/fedpi-worker.service.d"
printf '[Service]\nWatchdogSec=6\n' >"$ROOT/etc/systemd/system/fedpi-worker.service.d/test.conf"
in_ct systemctl daemon-reload
in_ct systemctl enable fedpi-worker 2>/dev/null

# (a) READY gating: the worker reads its data before it binds the port
in_ct systemctl start --no-block fedpi-worker
sleep 0.3
state=$(prop ActiveState)
[ "$state" = activating ] || die "(a) expected activating before READY=1, got $state"
wait_for 120 "READY" active
say "(a) activating until READY=1, then active"

# the provisioning script is idempotent: a second run with the same options changes and restarts nothing
pid=$(prop MainPID)
again=$(in_ct /src/provisioning/install-worker.sh --name ct-1 --data /data --classes 0-3 --binary "/src/${bin#"$PWD"/}/fedpi-worker")
if echo "$again" | grep -qE "^(installed|wrote|created)"; then die "(a) a second install changed something: $again"; fi
[ "$(prop MainPID)" = "$pid" ] || die "(a) a second install restarted the worker"
say "(a) a second install-worker.sh run changed nothing (same MainPID $pid)"

# (b) STATUS and the API from inside
status=$(in_ct systemctl status fedpi-worker --no-pager | grep -i "status:" || true)
case "$status" in *"listening on port 8470"*) ;; *) die "(b) no STATUS line in systemctl status: $status" ;; esac
# python3-minimal has no http.client: a plain socket
node=$(in_ct python3 -c '
import socket
s = socket.create_connection(("127.0.0.1", 8470), timeout=5)
s.sendall(b"GET /v1/node HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode())')
case "$node" in *'"node":"ct-1"'*) ;; *) die "(b) /v1/node answered: $node" ;; esac
say "(b) $status; /v1/node answers"

# (c) frozen: the watchdog notices and systemd restarts it
in_ct systemctl kill --kill-who=main -s SIGSTOP fedpi-worker
wait_for 60 "the watchdog restart" restarts_at_least 1
say "(c) SIGSTOP -> watchdog restart, NRestarts=$(prop NRestarts)"

# (d) killed: Restart=on-failure
in_ct systemctl kill --kill-who=main -s SIGKILL fedpi-worker
wait_for 60 "the restart after SIGKILL" restarts_at_least 2
say "(d) SIGKILL -> restart, NRestarts=$(prop NRestarts)"

# (e) enabled: back after a reboot
shutdown_ct reboot
boot
wait_for 120 "autostart after reboot" active
say "(e) enabled=$(in_ct systemctl is-enabled fedpi-worker), active after reboot"
in_ct journalctl -b -1 -u fedpi-worker --no-pager -o cat 2>/dev/null | grep -E "Watchdog timeout|killed|Started|listening" | head -8 | sed 's/^/    /' || true
shutdown_ct poweroff
trap - EXIT
say "systemd test passed"
