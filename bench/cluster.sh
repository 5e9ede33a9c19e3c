#!/usr/bin/env bash
# The cluster (issue 16) on the machine it runs on: PostgreSQL's load per member, the time from
# a member's kill -9 to the survivors owning all the targets, and the probe path's CPU with the
# cluster on vs off.
#
#   bash bench/cluster.sh                  # 100,000 targets @ 120 s, 4 members: ~16 minutes
#   BENCH_QUICK=1 bash bench/cluster.sh    # 10,000 targets @ 30 s, shorter windows: ~6 minutes
#   WATCHFIRE_BIN=path/to/watchfire bash bench/cluster.sh    # a release binary already built
#   BENCH_TARGETS=N BENCH_INTERVAL=S BENCH_MEMBERS=M BENCH_LEASE=S BENCH_WARMUP=S BENCH_WINDOW=S
#   BENCH_AB=0 bash bench/cluster.sh       # parts 1 and 2 only
#   BENCH_LOAD=0 bash bench/cluster.sh     # part 3 only
#
# Method
# - Loopback only. Everything started here (nginx, PostgreSQL, every watchfire) is stopped on
#   exit (trap); every wait is bounded.
# - Targets: N URLs `http://127.0.0.1:PORT/tK` on one nginx (bench/nginx.conf, 1 worker), in one
#   file_sd JSON file, probed every INTERVAL (timeout 5 s), `metrics: { detail: minimal }`.
# - PostgreSQL: Debian's, initdb in a temp dir, pg_ctl on a free loopback port, default settings
#   (fsync on) with pg_stat_statements preloaded when installed.
# - Binary: `target/release/watchfire` (cargo build --release) or WATCHFIRE_BIN, run from a
#   private copy as a user runs it; the database URL passed in WATCHFIRE_CLUSTER_URL /
#   WATCHFIRE_STORAGE_URL (never on a command line).
# 1. Load: M members `watchfire run --cluster URL --cluster.id mK --location default
#    --cluster.lease LEASE` on one database (the store's too, as without `--storage.*`); the
#    first alone until it answers (it creates the schema), then the others. Once every member
#    sees M members and their owned targets add up to N, WARMUP seconds (default: two intervals
#    and 10 s, so that every target's deciding probe and its transition are behind), then a window
#    of WINDOW seconds: pg_stat_database (xact_commit, tup_inserted/updated/deleted/fetched) of that
#    database and pg_stat_statements (calls, rows, per statement) at both ends; each member's
#    probes (`watchfire_probes_total`) and CPU (/proc/PID/stat), PostgreSQL's CPU (postmaster and
#    its children). Reported per member per second (totals / M / window).
# 2. Rebalance: kill -9 of one member; every 100 ms each survivor's `/api/v1/cluster` is read:
#    the time from the kill until every survivor sees M-1 members and their `owned_targets` add
#    up to N (the floor is the lease: a dead member's heartbeat counts until it ends).
# 3. A/B: one `watchfire run` on the same N targets, with `--cluster` (a cluster of one: it owns
#    every target, its store in PostgreSQL) against one without (`--storage.url`, the same
#    store in PostgreSQL): the same work but for membership. Pairs alternate (off-on, on-off,
#    off-on), each run on a fresh database; CPU per probe = the process's utime+stime over a
#    window of AB_WINDOW seconds starting AB_WARMUP seconds after it owns every target, divided
#    by the probes in the window (`watchfire_probes_total`, read outside the CPU window); the
#    probe path's part of it from the probe threads alone (`watchfire-probe-*`, their
#    /proc/PID/task/*/stat), and every other group of threads by name. A run that skipped ticks
#    is reported. Reported: each run, the medians, the paired ratios on/off for the process and
#    for the probe threads and their medians (goal: within 5 %), and where the rest of the CPU
#    went (µs per probe by thread group, the median run of each mode).
# The machine may be shared: the table names the load average at the start and the CPU the
# rest of the machine used during each window.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
source bench/lib.sh

QUICK=${BENCH_QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
    N=${BENCH_TARGETS:-10000} INTERVAL=${BENCH_INTERVAL:-30}
    WINDOW=${BENCH_WINDOW:-60} AB_WARMUP=10 AB_WINDOW=30
else
    N=${BENCH_TARGETS:-100000} INTERVAL=${BENCH_INTERVAL:-120}
    WINDOW=${BENCH_WINDOW:-120} AB_WARMUP=20 AB_WINDOW=60
fi
# Past every target's deciding probe: with `up_after: 2` (the default) a target goes unknown ->
# up at its second probe, in the second interval, and every view changes once then.
WARMUP=${BENCH_WARMUP:-$((2 * INTERVAL + 10))}
# BENCH_AB=0 skips the A/B (part 3); BENCH_LOAD=0 the load and the kill (parts 1 and 2).
AB=${BENCH_AB:-1}
LOAD=${BENCH_LOAD:-1}
M=${BENCH_MEMBERS:-4}
LEASE=${BENCH_LEASE:-10}
HZ=$(getconf CLK_TCK)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)

NGINX=$(find_tool nginx)
[[ -n "$NGINX" ]] || { install_packages nginx-light; NGINX=$(find_tool nginx); }
command -v jq >/dev/null || install_packages jq
command -v curl >/dev/null || install_packages curl
raise_open_files

bench_tmp cluster-bench
release_binary
start_nginx
start_postgres "max_connections=200"
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (pg_stat_statements: $PG_STATEMENTS); nginx on $TARGET"

awk -v n="$N" -v t="$TARGET" 'BEGIN {
    printf "[{\"targets\": ["
    for (i = 0; i < n; i++) printf "%s\"%st%d\"", (i ? ", " : ""), t, i
    print "]}]"
}' >"$TMP/targets.json"
cat >"$TMP/watchfire.yaml" <<EOF
defaults: { interval: ${INTERVAL}s, timeout: 5s }
metrics: { detail: minimal }
file_sd:
  - files: [$TMP/targets.json]
    interval: ${INTERVAL}s
EOF

now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
# Busy clock ticks of the whole machine (every CPU: all but idle and iowait).
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# "members owned_targets" as member PORT answers /api/v1/cluster, or nothing.
cluster_view() {
    curl -sf --max-time 5 "http://127.0.0.1:$1/api/v1/cluster" |
        jq -r '"\(.members | length) \(.owned_targets)"' 2>/dev/null || true
}
# The probes member PORT has run (every target's `watchfire_probes_total` summed).
probes() {
    curl -sf --max-time 60 "http://127.0.0.1:$1/metrics" |
        awk '/^watchfire_probes_total\{/ {s += $NF} END {printf "%.0f", s}'
}
skipped() {
    curl -sf --max-time 60 "http://127.0.0.1:$1/metrics" |
        awk '$1 ~ /^watchfire_ticks_skipped_total/ {s += $2} END {print s + 0}'
}
# `PID TICKS` of PostgreSQL's postmaster and every child of it.
pg_ticks() {
    local pm p
    pm=$(head -1 "$PG_DIR/data/postmaster.pid")
    for p in "$pm" $(pgrep -P "$pm"); do
        if [[ -r "/proc/$p/stat" ]]; then echo "$p $(ticks "$p" 2>/dev/null || echo 0)"; fi
    done
}
# Ticks used between two pg_ticks snapshots (a process new in the second counts whole).
pg_delta() { awk 'FNR == NR {a[$1] = $2; next} {d += $2 - ($1 in a ? a[$1] : 0)} END {print d + 0}' "$1" "$2"; }

# Waits (at most $2 s) until every member port in MEMBER_PORTS sees $1 members and their owned
# targets add up to N; prints the seconds waited.
wait_owned() {
    local want=$1 limit=$2 start p v seen total
    start=$(now)
    while :; do
        seen=0 total=0
        for p in "${MEMBER_PORTS[@]}"; do
            v=$(cluster_view "$p")
            [[ -n "$v" ]] || continue
            [[ "${v% *}" == "$want" ]] && seen=$((seen + 1))
            total=$((total + ${v#* }))
        done
        if ((seen == ${#MEMBER_PORTS[@]} && total == N)); then
            calc '%.2f' "$(now) - $start"
            return
        fi
        if awk -v s="$start" -v l="$limit" -v t="$(now)" 'BEGIN {exit !(t - s > l)}'; then
            log "after ${limit} s: $seen of ${#MEMBER_PORTS[@]} members see $want, owning $total of $N targets"
            tail -5 "$TMP"/m*.log >&2 || true
            exit 1
        fi
        sleep 0.1
    done
}

# Starts member K (`--cluster.id mK`) on database $2: sets MEMBER_PIDS[K] and MEMBER_PORTS[K].
start_member() {
    local k=$1 db=$2 port
    port=$(free_port "$NGINX_PORT" "$PG_PORT" "${MEMBER_PORTS[@]}")
    WATCHFIRE_CLUSTER_URL="$PG_URL/$db" "$BIN" run --config "$TMP/watchfire.yaml" \
        --listen "127.0.0.1:$port" --cluster.id "m$k" --location default \
        --cluster.lease "${LEASE}s" >"$TMP/m$k.log" 2>&1 &
    MEMBER_PIDS[k]=$!
    MEMBER_PORTS[k]=$port
    PIDS+=("$!")
    wait_port "$port" "$!" "member m$k" 120
}

stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Snapshots of the load figures, to files named after $1.
load_snapshot() {
    local k
    psql_at postgres "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted,
        tup_fetched, tup_returned FROM pg_stat_database WHERE datname = 'cluster'" >"$TMP/$1.db"
    if [[ "$PG_STATEMENTS" == 1 ]]; then
        psql_at postgres "SELECT queryid, calls, rows, shared_blks_hit + shared_blks_read,
            regexp_replace(left(query, 110), '\s+', ' ', 'g')
            FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'cluster')" >"$TMP/$1.st"
    fi
    # Rows fetched by index scans and read by sequential scans, per table (catalogs included).
    psql_at cluster "SELECT relname, coalesce(idx_tup_fetch, 0), seq_tup_read
        FROM pg_stat_all_tables" >"$TMP/$1.tables"
    pg_ticks >"$TMP/$1.pg"
    : >"$TMP/$1.members"
    for k in "${!MEMBER_PIDS[@]}"; do
        echo "$k $(ticks "${MEMBER_PIDS[k]}")" >>"$TMP/$1.members"
    done
    machine_ticks >"$TMP/$1.machine"
}

if ((LOAD)); then
# 1. PostgreSQL's load per member.
psql_at postgres "CREATE DATABASE cluster" >/dev/null
MEMBER_PIDS=() MEMBER_PORTS=()
START=$(now)
start_member 0 cluster
# The first member alone until it answers: it creates the schema.
for _ in $(seq 600); do [[ -n "$(cluster_view "${MEMBER_PORTS[0]}")" ]] && break; sleep 0.1; done
for ((k = 1; k < M; k++)); do start_member "$k" cluster; done
wait_owned "$M" 300 >/dev/null
log "$M members own the $N targets $(calc '%.0f' "$(now) - $START") s after the first started; warm-up ${WARMUP} s"
sleep "$WARMUP"
declare -a P0 P1
for k in "${!MEMBER_PORTS[@]}"; do P0[k]=$(probes "${MEMBER_PORTS[k]}"); done
W0=$(now)
load_snapshot a
sleep "$WINDOW"
load_snapshot b
W1=$(now)
for k in "${!MEMBER_PORTS[@]}"; do P1[k]=$(probes "${MEMBER_PORTS[k]}"); done
SECS=$(calc '%.1f' "$W1 - $W0")
# Each member's probes/s (the /metrics reads are outside the CPU window, a little wider).
PROBE_RATES=""
PROBES_ALL=0
for k in "${!MEMBER_PORTS[@]}"; do
    PROBE_RATES+="$(calc '%.0f' "(${P1[k]} - ${P0[k]}) / $SECS") "
    PROBES_ALL=$((PROBES_ALL + P1[k] - P0[k]))
done
MEMBER_CORES=$(awk -v hz="$HZ" -v s="$SECS" 'FNR == NR {a[$1] = $2; next} {printf "%.3f ", ($2 - a[$1]) / hz / s}' "$TMP/a.members" "$TMP/b.members")
PG_CORES=$(calc '%.3f' "$(pg_delta "$TMP/a.pg" "$TMP/b.pg") / $HZ / $SECS")
OTHER_CORES=$(calc '%.2f' "($(cat "$TMP/b.machine") - $(cat "$TMP/a.machine")) / $HZ / $SECS")
read -r XC XR TI TU TD TF TR <<<"$(paste "$TMP/a.db" "$TMP/b.db" | awk -F'\t' '{for (i = 1; i <= 7; i++) printf "%d ", $(i + 7) - $i}')"
per() { calc '%.1f' "$1 / $M / $SECS"; }
if [[ "$PG_STATEMENTS" == 1 ]]; then
    # Per statement: calls and rows in the window.
    awk -F'\t' 'FNR == NR {c[$1] = $2; r[$1] = $3; b[$1] = $4; next}
        {dc = $2 - c[$1]; dr = $3 - r[$1]; db = $4 - b[$1]
         if (dc > 0) printf "%d\t%d\t%d\t%s\n", dc, dr, db, $5}' \
        "$TMP/a.st" "$TMP/b.st" | sort -t$'\t' -k1,1nr >"$TMP/statements"
    CALLS=$(awk -F'\t' '{s += $1} END {print s + 0}' "$TMP/statements")
fi

# 2. Rebalance: kill -9 of one member.
VICTIM=1
OWNED_BEFORE=$(cluster_view "${MEMBER_PORTS[VICTIM]}")
KILLED=$(now)
kill -9 "${MEMBER_PIDS[VICTIM]}"
wait "${MEMBER_PIDS[VICTIM]}" 2>/dev/null || true
unset "MEMBER_PIDS[VICTIM]" "MEMBER_PORTS[VICTIM]"
MEMBER_PORTS=("${MEMBER_PORTS[@]}")
wait_owned "$((M - 1))" "$((LEASE * 3 + 120))" >/dev/null
TAKEOVER=$(calc '%.2f' "$(now) - $KILLED")
log "kill -9 m$VICTIM (owning ${OWNED_BEFORE#* }): the survivors own all $N targets after $TAKEOVER s (lease ${LEASE} s)"
for k in "${!MEMBER_PIDS[@]}"; do stop_pid "${MEMBER_PIDS[k]}"; done
fi

# 3. A/B: one process, cluster on vs off.
# Runs one A/B window: $1 = on | off, $2 = the pair; prints `CPU_US PROBES_PER_S SKIPPED
# OTHER_CORES PROBE_THREADS_US` (run in a subshell: the process is stopped before it returns) and
# writes the µs per probe of each group of threads to $TMP/ab_$1_$2.threads.
ab_run() {
    local mode=$1 db="ab_$1_$2" port pid p0 p1 t0 t1 w0 w1 m0 m1 skip ready=0
    psql_at postgres "CREATE DATABASE $db" >/dev/null
    port=$(free_port "$NGINX_PORT" "$PG_PORT")
    if [[ "$mode" == on ]]; then
        WATCHFIRE_CLUSTER_URL="$PG_URL/$db" "$BIN" run --config "$TMP/watchfire.yaml" \
            --listen "127.0.0.1:$port" --cluster.id solo >"$TMP/$db.log" 2>&1 &
    else
        WATCHFIRE_STORAGE_URL="$PG_URL/$db" "$BIN" run --config "$TMP/watchfire.yaml" \
            --listen "127.0.0.1:$port" >"$TMP/$db.log" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" "watchfire ($mode)" 120
    for _ in $(seq 1200); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/-/ready")" == 200 ]]; then
            if [[ "$mode" == off || "$(cluster_view "$port")" == "1 $N" ]]; then ready=1 && break; fi
        fi
        sleep 0.1
    done
    ((ready)) || { log "watchfire ($mode) not ready with $N targets after 120 s"; tail -5 "$TMP/$db.log" >&2; exit 1; }
    sleep "$AB_WARMUP"
    p0=$(probes "$port")
    w0=$(now); t0=$(ticks "$pid"); m0=$(machine_ticks); thread_groups "$pid" >"$TMP/$db.g0"
    sleep "$AB_WINDOW"
    w1=$(now); t1=$(ticks "$pid"); m1=$(machine_ticks); thread_groups "$pid" >"$TMP/$db.g1"
    p1=$(probes "$port")
    skip=$(skipped "$port")
    stop_pid "$pid"
    thread_delta "$TMP/$db.g0" "$TMP/$db.g1" |
        awk -v p="$((p1 - p0))" -v hz="$HZ" '{printf "%s %.2f\n", $1, $2 / hz * 1e6 / p}' >"$TMP/$db.threads"
    awk -v t="$((t1 - t0))" -v p="$((p1 - p0))" -v hz="$HZ" -v s="$(calc '%.3f' "$w1 - $w0")" \
        -v m="$((m1 - m0))" -v skip="$skip" \
        -v pt="$(awk '$1 ~ /^watchfire-probe/ {s += $2} END {print s + 0}' "$TMP/$db.threads")" \
        'BEGIN {printf "%.1f %.0f %d %.2f %.1f\n", t / hz * 1e6 / p, p / s, skip, (m - t) / hz / s, pt}'
}
declare -a ON=() OFF=() RATIO=() ON_P=() OFF_P=() RATIO_P=()
AB_ROWS=""
for pair in 1 2 3; do
    ((AB)) || break
    if ((pair == 2)); then order="on off"; else order="off on"; fi
    for mode in $order; do
        r=$(ab_run "$mode" "$pair")
        log "A/B pair $pair, cluster $mode: $(awk '{printf "%s us/probe (probe threads %s), %s probes/s, %s ticks skipped, other %s cores", $1, $5, $2, $3, $4}' <<<"$r")"
        if [[ "$mode" == on ]]; then on=$r; else off=$r; fi
    done
    ON+=("${on%% *}")
    OFF+=("${off%% *}")
    RATIO+=("$(calc '%.3f' "${on%% *} / ${off%% *}")")
    ON_P+=("${on##* }")
    OFF_P+=("${off##* }")
    RATIO_P+=("$(calc '%.3f' "${on##* } / ${off##* }")")
    AB_ROWS+="  pair $pair: off $off | on $on"$'\n'
done
med() { printf '%s\n' "$@" | median; }

echo
echo "cluster benchmark: $(nproc) CPUs ($CPU_MODEL), load average at start $LOAD_START"
echo "$N targets (file_sd, one nginx) every ${INTERVAL} s, timeout 5 s, metrics detail minimal; PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on loopback (fsync on)"
echo
if ((LOAD)); then
echo "1. PostgreSQL load: $M members, lease ${LEASE} s, r = 1; window ${SECS} s after ${WARMUP} s of warm-up"
echo "   probes/s per member: ${PROBE_RATES}(all: $(calc '%.0f' "$PROBES_ALL / $SECS")/s; expected $(calc '%.0f' "$N / $INTERVAL")/s)"
echo "   members' CPU (cores): ${MEMBER_CORES}; PostgreSQL's CPU: $PG_CORES cores; the whole machine: $OTHER_CORES cores busy"
FMT='   %-44s %12s %12s\n'
# shellcheck disable=SC2059
{
    printf "$FMT" "per second" "per member" "all members"
    printf "$FMT" "transactions committed (xact_commit)" "$(per "$XC")" "$(calc '%.1f' "$XC / $SECS")"
    [[ "$PG_STATEMENTS" == 1 ]] && printf "$FMT" "statements (pg_stat_statements calls)" "$(per "$CALLS")" "$(calc '%.1f' "$CALLS / $SECS")"
    printf "$FMT" "rows written (inserted + updated + deleted)" "$(per "$((TI + TU + TD))")" "$(calc '%.1f' "($TI + $TU + $TD) / $SECS")"
    printf "$FMT" "  inserted" "$(per "$TI")" "$(calc '%.1f' "$TI / $SECS")"
    printf "$FMT" "  updated" "$(per "$TU")" "$(calc '%.1f' "$TU / $SECS")"
    printf "$FMT" "  deleted" "$(per "$TD")" "$(calc '%.1f' "$TD / $SECS")"
    printf "$FMT" "rows fetched" "$(per "$TF")" "$(calc '%.1f' "$TF / $SECS")"
    printf "$FMT" "rolled back transactions" "$(per "$XR")" "$(calc '%.1f' "$XR / $SECS")"
}
echo "   the tables PostgreSQL fetched and read the most rows of (rows/s per member: by index, sequential):"
awk -F'\t' 'FNR == NR {f[$1] = $2; r[$1] = $3; next}
    {df = $2 - f[$1]; dr = $3 - r[$1]; if (df + dr > 0) printf "%d\t%d\t%s\n", df, dr, $1}' \
    "$TMP/a.tables" "$TMP/b.tables" | sort -t$'\t' -k1,1nr | head -6 |
    awk -F'\t' -v m="$M" -v s="$SECS" '{printf "     %10.1f %10.1f  %s\n", $1 / m / s, $2 / m / s, $3}'
if [[ "$PG_STATEMENTS" == 1 ]]; then
    echo "   statements, the most called, the most rows and the most buffers (calls/s, rows/s and buffers/s per member):"
    { head -8 "$TMP/statements"; sort -t$'\t' -k2,2nr "$TMP/statements" | head -8
      sort -t$'\t' -k3,3nr "$TMP/statements" | head -4; } | awk '!seen[$0]++' |
        awk -F'\t' -v m="$M" -v s="$SECS" '{printf "     %8.2f %10.1f %10.1f  %s\n", $1 / m / s, $2 / m / s, $3 / m / s, $4}'
fi
echo
echo "2. kill -9 of one of $M members (owning ${OWNED_BEFORE#* } targets) -> the $((M - 1)) survivors own all $N: $TAKEOVER s (lease ${LEASE} s)"
fi
((AB)) || exit 0
echo
echo "3. probe CPU, cluster on (--cluster, a cluster of one) vs off (--storage.url, the same PostgreSQL store), $N targets, ${AB_WINDOW} s windows"
echo "   runs (us/probe, probes/s, ticks skipped, other cores, the probe threads' us/probe):"
printf '%s' "$AB_ROWS"
echo "   off: ${OFF[*]} -> median $(med "${OFF[@]}") us/probe"
echo "   on:  ${ON[*]} -> median $(med "${ON[@]}") us/probe"
echo "   on / off per pair: ${RATIO[*]} -> median $(med "${RATIO[@]}")"
echo "   the probe threads alone (the probe path): off median $(med "${OFF_P[@]}"), on median $(med "${ON_P[@]}") us/probe;"
echo "   on / off per pair: ${RATIO_P[*]} -> median $(med "${RATIO_P[@]}") (goal <= 1.05)"
# Where each mode's CPU went: the run whose process figure is the mode's median.
for mode in off on; do
    if [[ "$mode" == on ]]; then runs=("${ON[@]}"); else runs=("${OFF[@]}"); fi
    m=$(med "${runs[@]}")
    for i in "${!runs[@]}"; do
        [[ "${runs[i]}" == "$m" ]] || continue
        echo "   cluster $mode (pair $((i + 1))), us/probe by thread group: $(awk '{printf "%s %s; ", $1, $2}' "$TMP/ab_${mode}_$((i + 1)).threads")"
        break
    done
done
