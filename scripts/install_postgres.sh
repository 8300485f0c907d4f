#!/usr/bin/env bash
# Install the PostgreSQL server binaries the test suite and bench/bench_queue.py run their own
# throwaway clusters with (tests/pg_server.py: initdb + pg_ctl on a free loopback port).
#
# Idempotent and non-interactive: does nothing when /usr/lib/postgresql/<major>/bin/pg_ctl is
# already there. Installs Debian's `postgresql` package when we are root with apt-get (running
# `apt-get update` only if the install fails without it), then stops the cluster the package
# creates and sets it to start manually: nothing here needs a PostgreSQL service running.
# Without root or apt-get it installs nothing, says so and exits 0: the PostgreSQL tests then
# skip with "PostgreSQL server not installed: run scripts/install_postgres.sh".
set -euo pipefail

find_pg_ctl() {  # the newest major version's pg_ctl, if any
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$found" ] && [ -x "$found" ] && echo "$found"
}

if pg_ctl="$(find_pg_ctl)"; then
  echo "postgres: server present ($pg_ctl)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "postgres: apt-get not found; not installing the PostgreSQL server" \
       "(the PostgreSQL tests will skip)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "postgres: not root; not installing the PostgreSQL server" \
       "(run 'sudo $0' to install; the PostgreSQL tests will skip)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install() {
  apt-get install -y -q --no-install-recommends postgresql
}
echo "postgres: installing Debian's postgresql package"
if ! install >/dev/null 2>&1; then
  echo "postgres: install failed with the current package lists; running apt-get update"
  if ! { apt-get update -qq && install; }; then
    echo "postgres: could not install the PostgreSQL server (the PostgreSQL tests will skip)"
    exit 0
  fi
fi

# The package creates and may start a cluster ("main"); the tests start their own instead.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r version name _rest; do
    pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
    conf="/etc/postgresql/$version/$name/start.conf"
    if [ -f "$conf" ]; then echo manual >"$conf"; fi
  done
fi

if pg_ctl="$(find_pg_ctl)"; then
  echo "postgres: installed ($pg_ctl); no service left running"
else
  echo "postgres: the package installed but no pg_ctl was found under /usr/lib/postgresql" \
       "(the PostgreSQL tests will skip)"
fi
exit 0
