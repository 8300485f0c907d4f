#!/usr/bin/env bash
# Install openremix with its test dependencies into .venv and run the whole suite.
# Used by the README and by .ci/run. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
# System packages the tests drive for real (Chromium for the playground); skipped without root.
bash scripts/install_system_deps.sh

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
