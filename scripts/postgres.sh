#!/usr/bin/env bash
# Runs COMMAND with DATABASE_URL set to a PostgreSQL server the tests may use:
#   1. DATABASE_URL if it is set;
#   2. else the local server on 127.0.0.1:${TEST_PG_LOCAL_PORT:-5432} if it answers as user
#      postgres without a password (database `test`, created if missing);
#   3. else a throwaway cluster under target/pg-test on port ${TEST_PG_PORT:-55432}, installing
#      Debian's `postgresql` package first if its binaries are missing; the cluster is stopped
#      and removed when COMMAND ends, however it ends.
# Usage: scripts/postgres.sh cargo test -p task-store-postgres
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGS...]   (runs COMMAND with DATABASE_URL set)" >&2
  exit 2
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ -n "${DATABASE_URL:-}" ]; then
  echo "postgres.sh: using DATABASE_URL from the environment" >&2
  exec "$@"
fi

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

local_port="${TEST_PG_LOCAL_PORT:-5432}"
local_psql() {
  psql -h 127.0.0.1 -p "$local_port" -U postgres -d postgres -w -Atq "$@"
}
if command -v psql >/dev/null 2>&1 && local_psql -c 'SELECT 1' >/dev/null 2>&1; then
  if [ "$(local_psql -c "SELECT count(*) FROM pg_database WHERE datname = 'test'")" = "0" ]; then
    local_psql -c 'CREATE DATABASE test'
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$local_port/test"
  echo "postgres.sh: using the local server, $DATABASE_URL" >&2
  exec "$@"
fi

if ! command -v psql >/dev/null 2>&1 || [ -z "$(pg_bin)" ]; then
  echo "postgres.sh: installing postgresql (apt)..." >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
fi

# A throwaway cluster. initdb refuses to run as root: as root, run the server as the
# `postgres` user that the Debian package creates.
bin="$(pg_bin)"
if [ -z "$bin" ]; then
  echo "postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
  exit 1
fi
port="${TEST_PG_PORT:-55432}"
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
dir="$PWD/target/pg-test"
mkdir -p target
rm -rf "$dir"
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  if ! runuser -u postgres -- test -w "$dir"; then
    # The postgres user cannot reach target/ (a private home directory): use /tmp.
    rm -rf "$dir"
    dir="$(mktemp -d /tmp/pg-test.XXXXXX)"
    chown postgres: "$dir"
  fi
fi
stop() {
  as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM
echo "postgres.sh: starting a throwaway cluster in $dir on port $port" >&2
as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 1
}
as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/server.log" \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null || {
  cat "$dir/server.log" >&2
  exit 1
}
psql -h 127.0.0.1 -p "$port" -U postgres -d postgres -w -qc 'CREATE DATABASE test'
export DATABASE_URL="postgres://postgres@127.0.0.1:$port/test"
"$@"
