#!/usr/bin/env bash
# The worker's unit in a real systemd: Debian bookworm booted with systemd-nspawn (the recipe in
# ../shared/recipes/systemd-nspawn.sh), the worker installed with provisioning/install-worker.sh, then:
#   (a) `systemctl start` stays `activating` until the worker sends READY=1 (port bound)
#   (b) the STATUS line shows in `systemctl status`; /v1/node answers over mutual TLS (the worker's
#       certificate names ct-1; the key reached the service as a systemd credential)
#   (f) a re-signed certificate: install-worker.sh reloads (systemctl reload), the worker serves the
#       new certificate with the same MainPID; the unit's `systemd-analyze security` score is printed
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
CACHE=$BASE/rootfs-bookworm-2.tar.zst   # -2: with libstb0 (the worker decodes image folders)
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
swift build --product fedpi 2>&1 | grep -E "error" && die "build failed"
[ -x "$bin/fedpi-worker" ] || die "no worker binary at $bin"

# the fleet's certificates: the worker's key made by a request (as on a board), so a renewal is a
# new signature for the same key
TLSDIR=$BASE/tls
rm -rf "$TLSDIR"
"$bin/fedpi" certs init --dir "$TLSDIR/ca" --days 30 >/dev/null
"$bin/fedpi" certs request --name ct-1 --ip 127.0.0.1 --out "$TLSDIR" >/dev/null
"$bin/fedpi" certs sign --ca "$TLSDIR/ca" --role worker --days 20 "$TLSDIR/ct-1.csr" >/dev/null
"$bin/fedpi" certs issue --ca "$TLSDIR/ca" --role aggregator --name aggregator --out "$TLSDIR" >/dev/null
ct_tls=/src/${TLSDIR#"$PWD"/}
fingerprint() { "$bin/fedpi" certs inspect "$1" | awk '/sha256/ {print $2}'; }
# GET PATH from the worker over mutual TLS as the aggregator, checking that its certificate names
# ct-1; prints the served certificate's SHA-256, then the answer (the container shares the host's network)
https_get() {
  python3 - "$1" "$TLSDIR" <<'PY'
import hashlib, socket, ssl, sys
path, d = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(d + "/ca/ca.crt")
ctx.load_cert_chain(d + "/aggregator.crt", d + "/aggregator.key")
with socket.create_connection(("127.0.0.1", 8470), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="ct-1") as s:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: ct-1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())
    print(data.decode())
PY
}

# the root is remade when it came from another cache (an older package list)
if [ ! -x "$ROOT/lib/systemd/systemd" ] || [ "$(cat "$ROOT/.fedpi-cache" 2>/dev/null)" != "$(basename "$CACHE")" ]; then
  rm -rf "$ROOT"; mkdir -p "$ROOT"
  if [ -f "$CACHE" ]; then
    tar -C "$ROOT" --zstd -xpf "$CACHE"
  else
    MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
             awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
    say "debootstrap bookworm from $MIRROR (once; cached in $CACHE)"
    debootstrap --variant=minbase \
      --include=systemd,systemd-sysv,dbus,python3-minimal,libopenblas0-pthread,zlib1g,libstdc++6,libgfortran5,libstb0 \
      bookworm "$ROOT" "$MIRROR" >"$BASE.debootstrap.log" 2>&1 || skip "debootstrap failed (see $BASE.debootstrap.log)"
    echo "$MACHINE" >"$ROOT/etc/hostname"
    basename "$CACHE" >"$ROOT/.fedpi-cache"
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
install_args=(--name ct-1 --data /data --classes 0-3 --binary "/src/${bin#"$PWD"/}/fedpi-worker"
              --cert "$ct_tls/ct-1.crt" --key "$ct_tls/ct-1.key" --ca "$ct_tls/ca/ca.crt")
in_ct /src/provisioning/install-worker.sh "${install_args[@]}" --no-start | sed 's/^/    /'
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
again=$(in_ct /src/provisioning/install-worker.sh "${install_args[@]}")
if echo "$again" | grep -qE "^(installed|wrote|created)"; then die "(a) a second install changed something: $again"; fi
[ "$(prop MainPID)" = "$pid" ] || die "(a) a second install restarted the worker"
say "(a) a second install-worker.sh run changed nothing (same MainPID $pid)"

# (b) STATUS and the API from inside
status=$(in_ct systemctl status fedpi-worker --no-pager | grep -i "status:" || true)
case "$status" in *"listening on port 8470"*) ;; *) die "(b) no STATUS line in systemctl status: $status" ;; esac
node=$(https_get /v1/node) || die "(b) no answer over mutual TLS"
case "$node" in *'"node":"ct-1"'*'"tls":{'*) ;; *) die "(b) /v1/node answered: $node" ;; esac
[ "$(in_ct stat -c %U:%a /etc/fedpi/tls/worker.key)" = root:600 ] || die "(b) the key file is not root-only"
in_ct runuser -u fedpi -- cat /etc/fedpi/tls/worker.key >/dev/null 2>&1 && die "(b) user fedpi can read the key file"
say "(b) $status; /v1/node answers over mutual TLS as ct-1; the key file is root-only (a credential for the service)"

# (f) renewal: the same request signed again, installed, taken by a reload without a restart
old=$(echo "$node" | head -1)
"$bin/fedpi" certs sign --ca "$TLSDIR/ca" --role worker --days 25 "$TLSDIR/ct-1.csr" >/dev/null
renewed=$(in_ct /src/provisioning/install-worker.sh "${install_args[@]}")
echo "$renewed" | grep -q "reloaded its certificate" || die "(f) install-worker.sh did not reload: $renewed"
served=$(https_get /v1/health | head -1)
[ "$served" = "$(fingerprint "$TLSDIR/ct-1.crt")" ] && [ "$served" != "$old" ] || die "(f) the worker still serves the old certificate"
[ "$(prop MainPID)" = "$pid" ] || die "(f) the reload restarted the worker"
say "(f) re-signed certificate taken by systemctl reload (same MainPID $pid)"
say "    $(in_ct systemd-analyze security fedpi-worker --no-pager 2>/dev/null | tail -1)"

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
