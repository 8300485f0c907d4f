#!/usr/bin/env bash
# Install openremix with its test dependencies into .venv and run the whole suite.
# Used by the README and by .ci/run. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# The same install script the Dockerfiles use, in place and with every extra.
EDITABLE=1 bash scripts/install.sh .venv test,diffusers,llm,minilm,s3,postgres
# System packages the tests drive for real (Chromium for the playground); skipped without root.
bash scripts/install_system_deps.sh
# A PostgreSQL server for the many-machines tests (each test run starts its own cluster).
bash scripts/install_postgres.sh

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
