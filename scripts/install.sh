#!/usr/bin/env bash
# Install openremix with the extras named in EXTRAS into the virtual environment VENV (made when
# missing): `bash scripts/install.sh VENV [EXTRAS]`, e.g. `bash scripts/install.sh .venv s3,postgres`.
# scripts/test.sh (CI) and both Dockerfiles install through this one script, so an image gets
# what CI tested. EDITABLE=1 installs the working tree in place (development, CI).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${1:?usage: scripts/install.sh VENV [EXTRAS]}"
EXTRAS="${2:-}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch is pinned here only (the package itself takes a range), for the extras that need it.
case ",$EXTRAS," in
  *,diffusers,* | *,minilm,*) "$VENV/bin/python" -m pip install --quiet "torch==${TORCH_VERSION:-2.13.0}" ;;
esac
target="."
if [ -n "$EXTRAS" ]; then
  target=".[$EXTRAS]"
fi
editable=()
if [ "${EDITABLE:-0}" = 1 ]; then
  editable=(-e)
fi
# llama-cpp-python (the llm extra) builds llama.cpp from source (about 5 min, once per machine:
# pip caches the wheel); GGML_NATIVE=OFF keeps that wheel portable to any x86-64.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$VENV/bin/python" -m pip install --quiet \
  "${editable[@]}" "$target"
