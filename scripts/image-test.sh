#!/usr/bin/env bash
# The container image built from docker/Dockerfile and used as a user would, with podman (no Docker
# engine runs on these machines; the recipe is ../shared/recipes/podman.sh):
#   (a) the image and its worker-only target (--target worker): sizes (the worker image within 120 MB),
#       the binaries' sizes, no shell or package manager inside; every program starts
#   (b) the worker image's container, --read-only, as uid 10001, state on a volume, data mounted read-only,
#       certificates as a volume: `podman healthcheck run` passes over mutual TLS
#   (c) SIGTERM: the worker exits 0 within 10 s and logs STOPPING
#   (d) docker/compose.yml under podman-compose: aggregator + 3 workers complete 2 rounds (small limits,
#       through FEDPI_FLEET and an override file), the model is on the aggregator's volume
#   (e) the runtime stage for linux/arm64 (Debian arm64 + the runtime libraries) under qemu-user-static
# Base images are made locally and kept between runs in $CACHE (podman's storage): debian:bookworm-slim
# by debootstrap, swift:6.3-bookworm from the installed toolchain (with git and this machine's package
# mirror, which stand in for GitHub), debian:bookworm-slim-arm64. Needs root and Debian's mirror; where
# podman cannot run it prints SKIP and the reason, as the nspawn test does.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${CACHE:-/var/cache/fedpi-image-test}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
WORK=$PWD/.build/image-test
IMAGE=fedpi:latest
WORKER_IMAGE=fedpi-worker:latest
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*"; }
skip() { echo "SKIP image test: $*"; exit 0; }
cleanup() {
  podman rm -f -t 0 fedpi-test-worker >/dev/null 2>&1 || true
  podman volume rm -f fedpi-test-state >/dev/null 2>&1 || true
  [ -n "${compose:-}" ] && "${compose[@]}" down -v >/dev/null 2>&1 || true
}
die() {
  say "FAIL: $*"
  podman logs fedpi-test-worker 2>&1 | tail -20 || true
  [ -n "${compose:-}" ] && "${compose[@]}" logs 2>&1 | tail -40 || true
  cleanup
  exit 1
}

[ "$(id -u)" -eq 0 ] || skip "needs root (rootful podman)"
# iptables: netavark's bridge networks need it and it is only a recommendation of the packages above
packages=(podman buildah runc netavark aardvark-dns iptables debootstrap slirp4netns uidmap qemu-user-static binfmt-support)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 \
    || skip "cannot install ${missing[*]}"
fi

# podman's configuration as in the recipe: overlay storage in $CACHE, runc (crun fails on this cgroup
# setup), ulimits no higher than this machine's hard limits; netavark with aardvark-dns, so compose's
# services find each other by name (the CNI backend has no DNS plugin in bookworm)
mkdir -p "$CACHE" /etc/containers "$WORK"
cat > /etc/containers/storage.conf <<EOF
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "$CACHE/storage"
EOF
cat > /etc/containers/containers.conf <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
[network]
network_backend = "netavark"
EOF
podman info >/dev/null 2>&1 || skip "podman does not run here: $(podman info 2>&1 | tail -1)"

MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
                   awk '/^deb /{print $2; exit}' /etc/apt/sources.list)}
SECURITY=${SECURITY:-$(awk '/^URIs:/ && /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)}
SECURITY=${SECURITY:-${MIRROR%/debian}/debian-security}
# debian:bookworm-slim (or -arm64) from debootstrap, imported under the name the Dockerfile uses, and
# made like Docker Hub's slim image (debuerreotype): no docs, man pages or locales, and apt's .deb
# cache emptied after every install. The label marks this version of the recipe.
BASE_LABEL=slim-2
base_image() {  # arch tag
  local arch=$1 tag=$2 root="$CACHE/rootfs-$1"
  if podman image exists "$tag"; then
    [ "$(podman image inspect "$tag" --format '{{index .Labels "fedpi.base"}}' 2>/dev/null)" = "$BASE_LABEL" ] && return 0
    podman rmi -f "$tag" >/dev/null
  fi
  say "making $tag with debootstrap (once; kept in $CACHE)"
  [ -x "$root/bin/sh" ] || debootstrap --arch="$arch" --variant=minbase bookworm "$root" "$MIRROR" >"$WORK/debootstrap-$arch.log" 2>&1 \
    || { rm -rf "$root"; return 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
  printf '%s\n' "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY bookworm-security main" > "$root/etc/apt/sources.list"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' 'path-exclude /usr/share/man/*' \
    'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/lintian/*' \
    'path-exclude /usr/share/locale/*' > "$root/etc/dpkg/dpkg.cfg.d/docker"
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "${root:?}"/usr/share/man/* "$root"/usr/share/groff/* "$root"/usr/share/info/* "$root"/usr/share/lintian/* "$root"/usr/share/locale/*
  printf '%s\n' \
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' > "$root/etc/apt/apt.conf.d/docker-clean"
  tar --numeric-owner -C "$root" -c . | podman import --arch "$arch" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL fedpi.base=$BASE_LABEL" --change 'CMD ["bash"]' - "$tag" >/dev/null
}
base_image amd64 docker.io/library/debian:bookworm-slim || skip "debootstrap cannot reach Debian's mirror ($MIRROR)"

# swift:6.3-bookworm from the installed toolchain, with git and the package mirror: on this machine
# git reads github.com from /opt/swift-packages (/etc/gitconfig), and the image does the same
if ! podman image exists docker.io/library/swift:6.3-bookworm; then
  say "making swift:6.3-bookworm from the installed toolchain (once; kept in $CACHE)"
  c=$(buildah from --pull=never docker.io/library/debian:bookworm-slim)
  buildah run "$c" -- sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends binutils gcc libc6-dev libstdc++-12-dev git \
    libncurses6 zlib1g-dev libuuid1 libcurl4 libxml2 libedit2 libsqlite3-0 tzdata ca-certificates \
    && rm -rf /var/lib/apt/lists/*' >"$WORK/swift-image.log" 2>&1
  tc=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")
  m=$(buildah mount "$c")
  mkdir -p "$m$(dirname "$tc")"
  cp -a "$tc" "$m$tc"
  if [ -d /opt/swift-packages ]; then
    cp -a /opt/swift-packages "$m/opt/"
    git config --file "$m/etc/gitconfig" --get-regexp 'url\..*' >/dev/null 2>&1 || {
      git config --file "$m/etc/gitconfig" --add url./opt/swift-packages/.insteadOf https://github.com/
    }
  fi
  buildah umount "$c" >/dev/null
  buildah config --env PATH="$tc/usr/bin":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["swift","--version"]' "$c"
  buildah commit --rm "$c" docker.io/library/swift:6.3-bookworm >/dev/null
fi

# (a) the image, built from docker/Dockerfile as it is (on the host's network: builds reach Debian's
# mirror through the host's resolver, which netavark's bridge does not forward to here)
say "podman build -f docker/Dockerfile (the Swift build inside takes most of this test)"
t=$(date +%s)
podman build --pull=never --network host --format docker -f docker/Dockerfile -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log"; die "podman build failed (log: $WORK/build.log)"; }
say "built $IMAGE in $(($(date +%s) - t)) s"
podman build --pull=never --network host --format docker --target worker -f docker/Dockerfile -t "$WORKER_IMAGE" . >>"$WORK/build.log" 2>&1 \
  || die "podman build --target worker failed (log: $WORK/build.log)"
for i in "$IMAGE" "$WORKER_IMAGE"; do
  size=$(podman image inspect "$i" --format '{{.Size}}')
  say "$i: $((size / 1000000)) MB uncompressed ($size bytes); layers: $(podman history "$i" --format '{{.Size}}' | grep -v '^0 B$' | tr '\n' ' ')"
done
size=$(podman image inspect "$WORKER_IMAGE" --format '{{.Size}}')
[ "$size" -le 120000000 ] || die "the worker image is $((size / 1000000)) MB, over the 120 MB budget"
mnt=$(podman image mount "$IMAGE")
for f in "$mnt"/usr/local/bin/*; do echo "  $(basename "$f"): $(($(stat -c %s "$f") / 1000)) kB"; done
[ ! -e "$mnt/bin/sh" ] && [ ! -e "$mnt/usr/bin/apt-get" ] || die "the image has a shell or a package manager"
podman image unmount "$IMAGE" >/dev/null
for p in fedpi-worker fedpi-aggregator fedpi; do  # each loads its libraries and answers
  v=$(podman run --rm --read-only --entrypoint "/usr/local/bin/$p" "$IMAGE" --help 2>&1) || die "$p does not start in the image: $v"
done
say "fedpi-worker, fedpi-aggregator and fedpi start in the image (--help)"

# the fleet's certificates, made by the image's own fedpi (node names = the compose service names)
TLS=$WORK/tls
rm -rf "$TLS" && mkdir -p "$TLS"
certs() { podman run --rm --user 0 -v "$TLS:/tls" --entrypoint /usr/local/bin/fedpi "$IMAGE" certs "$@" >/dev/null; }
certs init --dir /tls/ca || die "fedpi certs init failed in the image"
certs issue --ca /tls/ca --role aggregator --name aggregator --out /tls
for w in worker-1 worker-2 worker-3; do certs issue --ca /tls/ca --role worker --name "$w" --out /tls; done
chmod a+r "$TLS"/*.key   # the containers run as uid 10001 (a throwaway CA for this test)

# (b) one worker container (the worker image) as a user runs it
cleanup
podman volume create fedpi-test-state >/dev/null
podman run -d --name fedpi-test-worker --read-only \
  -v fedpi-test-state:/var/lib/fedpi -v "$DATA:/data:ro" -v "$TLS:/etc/fedpi/tls:ro" \
  -e FEDPI_HEALTH_CERT=/etc/fedpi/tls/worker-1.crt -e FEDPI_HEALTH_KEY=/etc/fedpi/tls/worker-1.key \
  "$WORKER_IMAGE" --name worker-1 --listen 0.0.0.0:8470 --data /data --classes 0-3 --state-dir /var/lib/fedpi \
  --tls-cert /etc/fedpi/tls/worker-1.crt --tls-key /etc/fedpi/tls/worker-1.key --tls-ca /etc/fedpi/tls/ca.crt \
  >/dev/null 2>"$WORK/podman-run.log" || die "podman run of the worker failed (log: $WORK/podman-run.log)"
healthy=0
for _ in $(seq 60); do
  if podman healthcheck run fedpi-test-worker >/dev/null 2>&1; then healthy=1; break; fi
  sleep 1
done
[ $healthy = 1 ] || die "the HEALTHCHECK did not pass within 60 s"
say "HEALTHCHECK passes (fedpi-worker --health-check with the worker's certificate on https://127.0.0.1:8470/v1/health)"
# the image has no shell to look inside with: the worker's process is read from the host's /proc
pid=$(podman inspect fedpi-test-worker --format '{{.State.Pid}}')
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 10001 ] || die "the worker runs as uid $uid, not 10001"
mount_options() { awk -v m="$1" '$5 == m {print $6}' "/proc/$pid/mountinfo" | tail -1; }
for m in / /data; do
  [[ ",$(mount_options "$m")," == *,ro,* ]] || die "$m is not read-only in the worker's container ($(mount_options "$m"))"
done
[[ ",$(mount_options /var/lib/fedpi)," == *,rw,* ]] || die "/var/lib/fedpi is not writable"
vol=$(podman volume inspect fedpi-test-state --format '{{.Mountpoint}}')
[ "$(stat -c %u "$vol")" = 10001 ] || die "the state volume belongs to uid $(stat -c %u "$vol"), not 10001"
say "runs as uid 10001; root filesystem and /data mounted read-only; /var/lib/fedpi a writable volume owned by 10001"

# (c) SIGTERM: graceful, exit 0, within 10 s
t=$(date +%s%N)
podman kill --signal TERM fedpi-test-worker >/dev/null
code=$(timeout 10 podman wait fedpi-test-worker) || die "the worker did not stop within 10 s of SIGTERM"
ms=$((($(date +%s%N) - t) / 1000000))
[ "$code" = 0 ] || die "the worker exited $code after SIGTERM"
logs=$(podman logs fedpi-test-worker 2>&1)
grep -q STOPPING <<<"$logs" || die "no STOPPING line in the worker's log"
say "SIGTERM: STOPPING logged, exit 0 after $ms ms"
cleanup

# (d) docker/compose.yml under podman-compose: 2 rounds on small subsets
VENV=$CACHE/compose-venv
if [ ! -x "$VENV/bin/podman-compose" ]; then
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q podman-compose >/dev/null 2>&1; } || die "cannot install podman-compose from PyPI"
fi
cat > "$WORK/fleet.toml" <<'EOF'
rounds = 2
min_nodes = 3
test_data = "/data"
test_limit = 1000
state_dir = "/var/lib/fedpi"
listen = "0.0.0.0:8480"
[tls]
cert = "/etc/fedpi/tls/aggregator.crt"
key = "/etc/fedpi/tls/aggregator.key"
ca = "/etc/fedpi/tls/ca.crt"
[[nodes]]
name = "worker-1"
url = "https://worker-1:8470"
[[nodes]]
name = "worker-2"
url = "https://worker-2:8470"
[[nodes]]
name = "worker-3"
url = "https://worker-3:8470"
EOF
{
  echo "services:"
  for i in 1 2 3; do
    classes=$(echo "0-3 4-6 7-9" | cut -d' ' -f"$i")
    echo "  worker-$i:"
    echo "    command: [\"--name\", \"worker-$i\", \"--listen\", \"0.0.0.0:8470\", \"--data\", \"/data\", \"--classes\", \"$classes\", \"--limit\", \"1500\","
    echo "              \"--state-dir\", \"/var/lib/fedpi\", \"--tls-cert\", \"/etc/fedpi/tls/worker-$i.crt\", \"--tls-key\", \"/etc/fedpi/tls/worker-$i.key\", \"--tls-ca\", \"/etc/fedpi/tls/ca.crt\"]"
  done
} > "$WORK/compose.test.yml"
export FEDPI_DATA=$DATA FEDPI_TLS=$TLS FEDPI_FLEET=$WORK/fleet.toml
compose=("$VENV/bin/podman-compose" -p fedpi-test -f docker/compose.yml -f "$WORK/compose.test.yml")
"${compose[@]}" down -v >/dev/null 2>&1 || true
say "podman-compose up: aggregator + 3 workers, 2 rounds"
"${compose[@]}" up -d --no-build >"$WORK/compose-up.log" 2>&1 || { tail -20 "$WORK/compose-up.log"; die "podman-compose up failed"; }
agg=$(podman ps -a --format '{{.Names}}' | grep -E '^fedpi-test[_-]aggregator[_-]1$' | head -1)
[ -n "$agg" ] || die "no aggregator container"
code=$(timeout 300 podman wait "$agg") || die "the aggregator did not finish 2 rounds within 300 s"
[ "$code" = 0 ] || die "the aggregator exited $code"
podman logs "$agg" 2>&1 | grep -E "round 2: .*accepted|done" | tail -4
vol=$(podman volume inspect fedpi-test_aggregator --format '{{.Mountpoint}}') || die "no aggregator volume"
[ -s "$vol/checkpoint.safetensors" ] || die "no model (checkpoint.safetensors) on the aggregator's volume"
rounds=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select max(round) from rounds where completed = 1').fetchone()[0])" "$vol/history.sqlite")
[ "$rounds" = 2 ] || die "the history's last completed round is $rounds, not 2"
say "compose: 2 rounds done, the model ($(stat -c %s "$vol/checkpoint.safetensors") bytes) and the history are on the aggregator's volume"
"${compose[@]}" down -v >/dev/null 2>&1
compose=()

# (e) the arm64 runtime stage under qemu: its package list resolves for Debian arm64
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if ! base_image arm64 docker.io/library/debian:bookworm-slim-arm64 \
   || ! podman run --rm --platform linux/arm64 docker.io/library/debian:bookworm-slim-arm64 true 2>/dev/null; then
  echo "SKIP arm64 runtime stage: no arm64 base image, or arm64 binaries do not run (qemu-user-static, binfmt_misc)"
else
  say "podman build --platform linux/arm64 --target runtime (under qemu)"
  podman build --pull=never --network host --format docker --platform linux/arm64 --target runtime \
    --build-arg DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim-arm64 -f docker/Dockerfile -t fedpi-runtime:arm64 . \
    >"$WORK/build-arm64.log" 2>&1 || { tail -20 "$WORK/build-arm64.log"; die "the arm64 runtime stage did not build"; }
  arch=$(podman run --rm --platform linux/arm64 fedpi-runtime:arm64 sh -c 'dpkg --print-architecture; uname -m' | tr '\n' ' ')
  libs=$(podman run --rm --platform linux/arm64 fedpi-runtime:arm64 sh -c 'ls /usr/lib/aarch64-linux-gnu | grep -cE "^lib(openblas|z|systemd|stb|sqlite3|stdc\+\+)\.so\.[0-9]+$"')
  [ "$libs" -ge 6 ] || die "the arm64 runtime lacks libraries ($libs of 6)"
  say "arm64 runtime stage built: $arch; OpenBLAS, zlib, libsystemd, stb, SQLite, libstdc++ present; $(($(podman image inspect fedpi-runtime:arm64 --format '{{.Size}}') / 1000000)) MB"
fi
say "PASS image test"
