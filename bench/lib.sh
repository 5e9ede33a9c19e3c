# Helpers shared by the bench/*.sh scripts; sourced, not run. Callers set `-euo pipefail` and,
# before wait_port, TMP (a temp dir whose *.log files are shown when a server dies).

log() { printf '== %s\n' "$*" >&2; }

# The path of a program, also from /usr/sbin (nginx), or nothing.
find_tool() {
    command -v "$1" 2>/dev/null || { [[ -x "/usr/sbin/$1" ]] && echo "/usr/sbin/$1"; } || true
}

# Installs Debian packages (sudo when not root).
install_packages() {
    log "installing $*"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# Every probe, request and proxied connection holds a socket: raise the open-files limit to
# 65536, or to the hard limit when that is lower.
raise_open_files() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
}

# A free port below the ephemeral range (so no client socket can hold it), other than the ports
# given as arguments (ports picked earlier whose server is not listening yet).
free_port() {
    local p
    for p in $(shuf -i 20000-30000 -n 200); do
        if [[ " $* " != *" $p "* && -z "$(ss -Htln "sport = :$p")" ]]; then
            echo "$p"
            return
        fi
    done
    log "no free port found"
    exit 1
}

# Waits (10 s, or $4 s, at most) until something listens on 127.0.0.1:PORT; fails if PID exits
# first.
wait_port() {
    local port=$1 pid=$2 what=$3 secs=${4:-10}
    for _ in $(seq "$((secs * 10))"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        kill -0 "$pid" 2>/dev/null || { log "$what did not start"; cat "$TMP"/*.log >&2 || true; exit 1; }
        sleep 0.1
    done
    log "$what is not listening on $port"
    exit 1
}

# The median of the numbers on stdin, one per line (the lower middle one of an even count).
median() { sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'; }

# A temp dir for this run in TMP (named after $1) and an empty PIDS: on exit (and on INT or
# TERM) every process in PIDS still running is stopped and reaped, the PostgreSQL of
# start_postgres is stopped, and TMP goes (unless BENCH_KEEP=1).
bench_tmp() {
    TMP=$(mktemp -d -t "watchfire-$1.XXXXXX")
    PIDS=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    if [[ -n "${PG_DIR:-}" ]]; then stop_postgres; fi
    # BENCH_KEEP=1 keeps the run's temp dir (the processes' logs) for a look afterwards.
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}

# The binary under test as a private copy, BIN=$TMP/watchfire, so that a rebuild during the run
# changes nothing under test: WATCHFIRE_BIN when set, else a fresh `cargo build --release`.
release_binary() {
    BIN="$TMP/watchfire"
    if [[ -n "${WATCHFIRE_BIN:-}" ]]; then
        cp "$WATCHFIRE_BIN" "$BIN"
    else
        log "building (cargo build --release)"
        cargo build --release --quiet --bin watchfire
        cp "${CARGO_TARGET_DIR:-target}/release/watchfire" "$BIN"
    fi
}

# Starts nginx (bench/nginx.conf: 1 worker, `200 ok\n`) in TMP on a free port other than the
# ports given: sets NGINX_PORT, NGINX_PID and TARGET (its URL). NGINX: the program (found when
# unset).
start_nginx() {
    local nginx=${NGINX:-$(find_tool nginx)}
    NGINX_PORT=$(free_port "$@")
    sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|$NGINX_PORT|g" bench/nginx.conf >"$TMP/nginx.conf"
    "$nginx" -e "$TMP/error.log" -p "$TMP" -c "$TMP/nginx.conf" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_port "$NGINX_PORT" "$NGINX_PID" nginx
    TARGET="http://127.0.0.1:$NGINX_PORT/"
}

# The user+system CPU clock ticks (CLK_TCK a second) PID has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The probe threads' CPU clock ticks and voluntary context switches so far: `TICKS SWITCHES`.
probe_threads() {
    local t ticks=0 sw=0 a b
    for t in /proc/"$1"/task/*; do
        [[ "$(cat "$t/comm" 2>/dev/null)" == watchfire-probe* ]] || continue
        a=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "$t/stat" 2>/dev/null) || continue
        b=$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null) || continue
        ticks=$((ticks + ${a:-0})) sw=$((sw + ${b:-0}))
    done
    echo "$ticks $sw"
}

# Every thread of PID by name, digits dropped (`watchfire-probe-0` and `-1` are one group):
# `NAME TICKS` lines, a group's user+system clock ticks so far. Two snapshots taken with it are
# compared by thread_delta.
thread_groups() {
    local t
    for t in /proc/"$1"/task/*; do
        awk '{name = $0; sub(/^[^(]*\(/, "", name); sub(/\) .*$/, "", name); gsub(/[0-9]+/, "", name)
              gsub(/ /, "_", name); sub(/^.*\) /, ""); print name, $12 + $13}' "$t/stat" 2>/dev/null || true
    done | awk '{s[$1] += $2} END {for (k in s) print k, s[k]}'
}
# The ticks each group used between two thread_groups snapshots ($1 before, $2 after): `NAME
# TICKS`, the largest first (a thread gone by the second snapshot is not counted).
thread_delta() {
    awk 'FNR == NR {a[$1] = $2; next} {d = $2 - ($1 in a ? a[$1] : 0); if (d > 0) print $1, d}' "$1" "$2" |
        sort -k2,2nr
}

# The reference every CPU figure is divided by: wrk's own CPU per `Connection: close` request
# (a fresh connection per request, as a probe), `wrk -t1 -c32 -d$1s` on TARGET three times,
# user+sys from bash's `time`. Sets WRK_CPUS and WRK_RATES (each run's µs per request and
# req/s) and their medians WRK_CPU and WRK_RATE. WRK: the program.
wrk_reference() {
    local secs=$1 i run
    WRK_CPUS=() WRK_RATES=()
    for i in 1 2 3; do
        run=$(wrk_once "$secs")
        log "wrk run $i: ${run% *} req/s, own CPU ${run#* } us/request"
        WRK_RATES+=("${run% *}")
        WRK_CPUS+=("${run#* }")
    done
    WRK_CPU=$(printf '%s\n' "${WRK_CPUS[@]}" | median)
    WRK_RATE=$(printf '%s\n' "${WRK_RATES[@]}" | median)
}

# One run of `wrk -t1 -c32 -d${1}s -H 'Connection: close'` on TARGET: prints its req/s and its
# own CPU (user+sys from bash's `time`) per request in µs, space-separated.
wrk_once() {
    local n rate TIMEFORMAT='%U %S'
    { time "$WRK" -t1 -c32 -d"${1}s" -H 'Connection: close' "$TARGET" >"$TMP/wrk.txt"; } 2>"$TMP/wrk.time"
    n=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
    rate=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMP/wrk.txt")
    echo "$rate $(awk -v n="$n" '{printf "%.1f", (n > 0 ? ($1 + $2) * 1e6 / n : 0)}' "$TMP/wrk.time")"
}

# Runs a PostgreSQL program as the `postgres` user when root (initdb refuses root).
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# A PostgreSQL of the run's own (Debian's `postgresql`, /usr/lib/postgresql/*/bin): initdb and
# pg_ctl in a directory of its own (PG_DIR: the `postgres` user cannot enter TMP) on a free
# loopback port, listening on 127.0.0.1 only, with pg_stat_statements preloaded when it is
# installed; extra `-c NAME=VALUE` settings are the arguments. Sets PG_BIN, PG_DIR, PG_PORT,
# PG_URL (`postgres://postgres:PASSWORD@127.0.0.1:PORT`, add `/DB`) and PG_STATEMENTS (1 when
# pg_stat_statements is there). Stopped and removed on exit (bench_cleanup).
start_postgres() {
    local opts=() c
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -n "$PG_BIN" && -x "$PG_BIN/initdb" ]] || { log "PostgreSQL is not installed (apt-get install postgresql)"; exit 1; }
    PG_DIR=$(mktemp -d -t watchfire-pg.XXXXXX)
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$PG_DIR"
    local pw="bench-$RANDOM$RANDOM"
    echo "$pw" >"$PG_DIR/pw"
    [[ $(id -u) == 0 ]] && chown postgres:postgres "$PG_DIR/pw"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --pwfile="$PG_DIR/pw" >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    PG_STATEMENTS=0
    if [[ -e "$(dirname "$PG_BIN")/lib/pg_stat_statements.so" ]]; then
        PG_STATEMENTS=1
        opts+=(-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all)
    fi
    for c in "$@"; do opts+=(-c "$c"); done
    PG_PORT=$(free_port)
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 ${opts[*]}" start >/dev/null ||
        { cat "$PG_DIR/log" >&2; exit 1; }
    PG_URL="postgres://postgres:$pw@127.0.0.1:$PG_PORT"
    if [[ "$PG_STATEMENTS" == 1 ]]; then psql_at postgres "CREATE EXTENSION pg_stat_statements" >/dev/null; fi
}

# Runs SQL $2 in database $1 as the superuser over the socket: unaligned, tab-separated rows.
psql_at() {
    as_pg "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d "$1" -XAtq -F $'\t' -v ON_ERROR_STOP=1 -c "$2"
}

stop_postgres() {
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=
}
