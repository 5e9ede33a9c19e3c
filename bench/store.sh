#!/usr/bin/env bash
# The store's figures: write throughput, bytes per target per day, read times, on a SQLite file
# and on a PostgreSQL of its own (release build; about a minute per backend).
#
#   bash bench/store.sh                  # SIM_MINUTES=20 simulated minutes of 10,000 targets
#   SIM_MINUTES=60 bash bench/store.sh
#
# Method: see benches/store.rs. PostgreSQL (Debian's `postgresql`, /usr/lib/postgresql/*/bin)
# runs from a temporary directory on a free loopback port (as the `postgres` user when run as
# root), fsync on, and is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort | tail -1)
[[ -n "$BIN" && -x "$BIN/initdb" ]] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

TMP=$(mktemp -d)
[[ $(id -u) == 0 ]] && chown postgres:postgres "$TMP"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { as_pg "$BIN/pg_ctl" -D "$TMP/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$TMP"; }
trap cleanup EXIT
echo bench-pw > "$TMP/pw"; [[ $(id -u) == 0 ]] && chown postgres:postgres "$TMP/pw"
as_pg "$BIN/initdb" -D "$TMP/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile="$TMP/pw" >/dev/null
as_pg "$BIN/pg_ctl" -D "$TMP/data" -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1" -l "$TMP/log" -w start >/dev/null

cargo bench --bench store
STORE_BENCH_PG_URL="postgres://postgres:bench-pw@127.0.0.1:$PORT/postgres" cargo bench --bench store
