#!/usr/bin/env bash
# Python interop check of the test command: installs safetensors + numpy from PyPI into .build/pyenv
# (once) and runs tests-python/interop.py against the debug fedpi binary.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/pyenv
if ! "$venv/bin/python" -c "import safetensors, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check safetensors numpy
fi
swift build --product fedpi >/dev/null
"$venv/bin/python" tests-python/interop.py "$(swift build --show-bin-path)/fedpi" .build/interop
