# shellcheck shell=bash
# Shared by install-worker.sh and install-aggregator.sh (sourced, not run).

require_root() { [ "$(id -u)" -eq 0 ] || { echo "run as root (sudo $0 …)" >&2; exit 1; }; }
have_systemd() { [ -d /run/systemd/system ]; }

# Prints the first of its arguments that is an executable file.
first_executable() {
  local b
  for b in "$@"; do [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }; done
  return 1
}

# install_if_changed SRC DST MODE [MESSAGE]: installs SRC as DST unless they are identical; then sets
# changed=1 and prints MESSAGE.
install_if_changed() {
  cmp -s "$1" "$2" && return 0
  install -m "$3" "$1" "$2"
  changed=1
  if [ -n "${4:-}" ]; then echo "$4"; fi
}

# Enables UNIT at boot and (re)starts it when something changed or it is not running.
start_unit() {
  systemctl daemon-reload
  systemctl enable "$1" >/dev/null 2>&1
  if [ "${changed:-0}" = 1 ] || ! systemctl is-active --quiet "$1"; then systemctl restart "$1"; fi
  echo "${1%.service} is $(systemctl is-active "$1") and enabled at boot"
}

# remove_unit UNIT FILE…: stops and disables UNIT, removes its unit file and FILEs.
remove_unit() {
  local unit=$1; shift
  if have_systemd; then systemctl disable --now "$unit" 2>/dev/null || true; fi
  rm -f "/etc/systemd/system/$unit" "$@"
  if have_systemd; then systemctl daemon-reload; fi
}
