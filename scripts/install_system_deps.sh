#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when they are missing:
#   chromium  - the headless browser tests/test_playground.py drives through Playwright.
# Idempotent and non-interactive. Without root or apt-get it installs nothing, says so and
# exits 0: the tests that need a package then skip with a reason.
set -euo pipefail

PACKAGES=()
[ -x /usr/bin/chromium ] || PACKAGES+=(chromium)

if [ "${#PACKAGES[@]}" -eq 0 ]; then
  echo "system deps: all present (chromium at /usr/bin/chromium)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "system deps: apt-get not found; not installing ${PACKAGES[*]}" \
       "(tests that need them will skip)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system deps: not root; not installing ${PACKAGES[*]}" \
       "(run 'sudo $0' to install; tests that need them will skip)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "system deps: installing ${PACKAGES[*]}"
# The package lists are often empty in fresh containers: update once, then install.
if ! apt-get install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi
echo "system deps: installed ${PACKAGES[*]}"
