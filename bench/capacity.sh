#!/usr/bin/env bash
# Capacity of the real `watchfire run` binary on the machine it runs on, with wrk's own CPU per
# request measured in the same run as the reference:
#
#   bash bench/capacity.sh                          # ~4-6 minutes after the build
#   CAPACITY_RATES="10000 14000" bash bench/capacity.sh   # only these offered rates, 5 runs each
#   CAPACITY_PAIRS=3 ...                    # runs per rate (each between two wrk runs), default 5
#   WATCHFIRE_BIN=OLD WATCHFIRE_BIN_B=NEW CAPACITY_RATES=5000 bash bench/capacity.sh
#                                   # two binaries at these rates, alternating A B A B A B
#   WATCHFIRE_ARGS="--min-wake-gap 0s" ...  # extra `watchfire run` flags (WATCHFIRE_ARGS_B for B)
#   CAPACITY_HOST=localhost ...             # targets by a host name (resolved every probe)
#
# Method
# - Everything runs on this machine and talks to 127.0.0.1 only; nginx and watchfire are
#   stopped on exit (trap). Every step is bounded in time.
# - Target: nginx (bench/nginx.conf: 1 worker, `200 ok\n`, no access log) on a free port.
# - Binary: `target/release/watchfire` (cargo build --release), run from a private copy as
#   `watchfire run --config FILE --listen 127.0.0.1:PORT --storage.path DIR`, as a user runs it
#   (the default SQLite store), each step with a fresh DIR in the run's temp dir: no step
#   inherits another's targets, states, transitions or incidents (a `data/` in the checkout
#   grew with every run, and what the store did at start-up then depended on the history).
# - Reference: `wrk -t1 -c32 -d5s -H 'Connection: close'` on nginx, three times: wrk's own CPU
#   (user+sys from bash `time`) per request (a fresh connection per request, as a probe); the
#   median. Its req/s is the loopback limit and bounds the search below.
# - A step offers R probes/s: R/10 targets (`url:` nginx) every 100 ms, timeout 90 ms. watchfire
#   starts, runs 3 s (every target has run), then a window of 5 s: /metrics is read before and
#   after it, the process' utime+stime (/proc/PID/stat) at its two ends.
#   - lag: the window's share of probes started ≤ 1 ms after their planned start, exact from the
#     lag histogram buckets summed over targets (p99 ≤ 1 ms ⇔ share ≥ 99 %), and the p99 by
#     linear interpolation inside its bucket;
#   - skipped: ticks skipped in the window (`watchfire_ticks_skipped_total`);
#   - errors: probes failed for a reason of watchfire's own (`watchfire_probe_local_errors_total`)
#     and probes that failed at all (`watchfire_probes_total{result!="success"}`), in the window;
#   - down: targets whose `watchfire_target_up` is 0 at the end (every target answers, so any is
#     a false down);
#   - CPU per probe: the window's CPU / (R × window), when no tick was skipped; and the part
#     of it the probe threads used (`probe_us`: the threads named `watchfire-probe-*`, from
#     /proc/PID/task/*/stat), the rest being the store, the incident feed, logging and the
#     runtime's other tasks;
#   - sleeps: the probe threads' voluntary context switches per probe (each one a park of the
#     thread in epoll_wait and a wake-up later); wrk, always busy at -c32, hardly sleeps;
#   - other: cores used by everything else on the machine during the window (/proc/stat busy
#     minus watchfire's), nginx included.
#   A step passes when share ≥ 99 %, nothing is skipped and nothing failed.
# - Capacity: the highest R that passes, found by bisection between 0 and 1.2 × wrk's rate down
#   to a resolution of 4 % of wrk's rate; a step that fails is run up to twice more and passes
#   if a repeat does (a neighbour's burst on a shared machine is not the prober's capacity: one
#   run whose first step failed twice in a slow minute stopped at 8,470/s, and its step at 1.2×
#   that, 10,160/s, then passed).
# - Then, with the capacity C found: 5 runs at 0.7 × C (median lag and CPU per probe), 5 runs at C
#   (CPU per probe), one run at 1.2 × C and one at 1.5 × C (past capacity: lag grows, ticks are
#   skipped and counted, and nothing else may break: no errors, no target down).
# - The runs at 0.7 × C and at C (and those of CAPACITY_RATES without a B) alternate with wrk
#   runs: wrk, step, wrk, step, ..., wrk. A step's CPU per probe is divided by the mean of wrk's
#   CPU per request in the runs on either side of it, and the verdict is the median of these
#   ratios. This machine's speed drifts by tens of percent within a minute (nginx's own CPU per
#   request drifts with it), so the reference taken at the start can be minutes and a
#   different machine speed away; the ratio to it is shown too.
# - Reported: a table with each figure next to its goal, the machine (nproc, CPU model, load
#   average at the start), every step's raw figures on stderr. Exit 0 when every step ran
#   (goals missed are reported, not failed); non-zero when the benchmark itself could not run or
#   something broke past capacity (errors or targets down).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
source bench/lib.sh

WARMUP=3
SECS=5
INTERVAL_MS=100
NGINX=$(find_tool nginx)
WRK=$(find_tool wrk)
if [[ -z "$NGINX" || -z "$WRK" ]]; then
    install_packages nginx-light wrk
    NGINX=$(find_tool nginx)
    WRK=$(find_tool wrk)
fi
raise_open_files
HZ=$(getconf CLK_TCK)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)

bench_tmp capacity
release_binary
ARGS=${WATCHFIRE_ARGS:-}
AB=${WATCHFIRE_BIN_B:-${WATCHFIRE_ARGS_B:-}}
if [[ -n "$AB" ]]; then
    [[ -n "${CAPACITY_RATES:-}" ]] || { log "WATCHFIRE_BIN_B or WATCHFIRE_ARGS_B needs CAPACITY_RATES"; exit 2; }
    cp "${WATCHFIRE_BIN_B:-$BIN}" "$TMP/watchfire-b"
fi
start_nginx
# The one worker (bench/nginx.conf): its CPU per probe is the target's share.
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
# CAPACITY_HOST=localhost: the targets name nginx by a host name each probe resolves.
# (wrk, the reference, connects by address either way: it resolves once.)
PROBE_TARGET=$TARGET
if [[ -n "${CAPACITY_HOST:-}" ]]; then PROBE_TARGET=${TARGET/127.0.0.1/$CAPACITY_HOST}; fi

# Busy clock ticks of the whole machine (every CPU: all but idle and iowait).
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# The ticks the hypervisor gave this machine's CPUs to others (part of machine_ticks).
steal_ticks() { awk '$1 == "cpu" {print $9}' /proc/stat; }
now() { date +%s.%N; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }

# 1. The reference: wrk's own CPU per Connection: close request.
wrk_reference 5

# The figures /metrics gives for one window edge, one `key value` a line: lag buckets summed
# over targets (`le:BOUND`), skipped ticks, local errors, failed probes, targets down.
# A detail level without per-target lag buckets must keep a lag histogram with a 1 ms bound;
# the first `watchfire_*lag*_bucket` family found is used then.
snapshot() {
    curl -sf --max-time 30 "http://127.0.0.1:$1/metrics" | awk '
        /^#/ {next}
        {
            name = $1; sub(/\{.*/, "", name)
            if (name ~ /^watchfire_.*lag.*_bucket$/) {
                if (fam == "" || name == "watchfire_probe_schedule_lag_seconds_bucket" && fam != name) {
                    delete le; fam = name
                }
                if (name == fam && match($1, /le="[^"]*"/)) le[substr($1, RSTART + 4, RLENGTH - 5)] += $2
            }
            else if (name == "watchfire_ticks_skipped_total") skipped += $2
            else if (name == "watchfire_probe_local_errors_total") local_err += $2
            else if (name == "watchfire_probes_total" && $1 !~ /result="success"/) failed += $2
            else if (name == "watchfire_target_up" && $2 == 0) down++
        }
        END {
            for (b in le) print "le:" b, le[b]
            print "skipped", skipped + 0; print "local_errors", local_err + 0
            print "failed", failed + 0; print "down", down + 0
        }'
}

# Window figures from two snapshots: share ≤ 1 ms (%), p99 (µs, interpolated), probes, skipped,
# local errors, failed, down (at the end), as `key=value` words.
window() {
    awk '
        FNR == NR {a[$1] = $2; next}
        {b[$1] = $2}
        END {
            n = 0
            for (k in b) if (k ~ /^le:/) {
                bound = substr(k, 4); d = b[k] - a[k]
                if (bound == "+Inf") total = d; else {bs[++n] = bound + 0; cnt[bound + 0] = d}
            }
            # Sort the finite bounds.
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (bs[j] < bs[i]) {t = bs[i]; bs[i] = bs[j]; bs[j] = t}
            le1 = -1
            for (i = 1; i <= n; i++) if (bs[i] == 0.001) le1 = cnt[bs[i]]
            if (total <= 0 || le1 < 0) {print "error=no-lag-buckets"; exit}
            want = 0.99 * total; p99 = -1; lo = 0; clo = 0
            for (i = 1; i <= n; i++) {
                c = cnt[bs[i]]
                if (c >= want) {p99 = lo + (bs[i] - lo) * (c > clo ? (want - clo) / (c - clo) : 1); break}
                lo = bs[i]; clo = c
            }
            if (p99 < 0) p99 = lo
            printf "share=%.2f p99_us=%.0f probes=%d skipped=%d local_errors=%d failed=%d down=%d\n",
                100 * le1 / total, p99 * 1e6, total, b["skipped"] - a["skipped"],
                b["local_errors"] - a["local_errors"], b["failed"] - a["failed"], b["down"]
        }' "$1" "$2"
}

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# One step at offered rate $1 (probes/s): prints its figures as `key=value` words.
step() {
    local rate=$1 n port pid t0 t1 c0 c1 m0 m1 w0 w1 p0 p1 g0 g1 s0 s1 win cpu other probe sleeps target steal
    n=$(((rate + 5) / 10))
    ((n < 1)) && n=1
    {
        echo "defaults: { interval: ${INTERVAL_MS}ms, timeout: $((INTERVAL_MS * 9 / 10))ms }"
        echo "targets:"
        for ((i = 0; i < n; i++)); do echo "  - { name: t$i, url: '$PROBE_TARGET' }"; done
    } >"$TMP/step.yml"
    port=$(free_port "$NGINX_PORT")
    rm -rf "$TMP/data"
    # shellcheck disable=SC2086 # the extra flags are words
    "$BIN" run --config "$TMP/step.yml" --listen "127.0.0.1:$port" --storage.path "$TMP/data" $ARGS >"$TMP/wf.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" watchfire
    sleep "$WARMUP"
    snapshot "$port" >"$TMP/a"
    w0=$(now); c0=$(ticks "$pid"); m0=$(machine_ticks); p0=$(probe_threads "$pid")
    g0=$(ticks "$NGINX_WORKER"); s0=$(steal_ticks)
    sleep "$SECS"
    w1=$(now); c1=$(ticks "$pid"); m1=$(machine_ticks); p1=$(probe_threads "$pid")
    g1=$(ticks "$NGINX_WORKER"); s1=$(steal_ticks)
    snapshot "$port" >"$TMP/b"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    win=$(window "$TMP/a" "$TMP/b")
    if [[ "$win" == error=* ]]; then
        log "no lag histogram with a 1 ms bound in /metrics: cannot measure lag"
        exit 1
    fi
    cpu=$(calc '%.1f' "($c1 - $c0) / $HZ * 1e6 / ($n * 1000 / $INTERVAL_MS * ($w1 - $w0))")
    probe=$(calc '%.1f' "(${p1% *} - ${p0% *}) / $HZ * 1e6 / ($n * 1000 / $INTERVAL_MS * ($w1 - $w0))")
    sleeps=$(calc '%.2f' "(${p1#* } - ${p0#* }) / ($n * 1000 / $INTERVAL_MS * ($w1 - $w0))")
    other=$(calc '%.2f' "($m1 - $m0 - ($c1 - $c0)) / $HZ / ($w1 - $w0)")
    target=$(calc '%.1f' "($g1 - $g0) / $HZ * 1e6 / ($n * 1000 / $INTERVAL_MS * ($w1 - $w0))")
    steal=$(calc '%.2f' "($s1 - $s0) / $HZ / ($w1 - $w0)")
    echo "rate=$((n * 1000 / INTERVAL_MS)) targets=$n $win cpu_us=$cpu probe_us=$probe sleeps=$sleeps nginx_us=$target other_cores=$other steal_cores=$steal load=$(cut -d' ' -f1 /proc/loadavg)"
}

passes() {
    local r=$1
    awk -v s="$(field share "$r")" 'BEGIN {exit !(s >= 99)}' &&
        [[ "$(field skipped "$r")" == 0 && "$(field failed "$r")" == 0 && "$(field local_errors "$r")" == 0 ]]
}

# Runs a step, logs it, prints it.
logged_step() {
    local r
    r=$(step "$1")
    log "step: $r"
    echo "$r"
}

med() {
    local k=$1 r
    shift
    for r in "$@"; do field "$k" "$r"; done | median
}

# PAIRS steps at rate $2 (CAPACITY_PAIRS, default 5), each between two wrk runs: wrk, step,
# wrk, step, ..., wrk. A row gains the mean of the wrk runs on either side of it (`wrk_us`, µs
# of wrk's own CPU per request) and its own CPU per probe over that (`ratio`). The machine's
# speed drifts by tens of percent within a minute here (nginx's own CPU per request drifts with
# it), so a ratio to wrk runs bracketing the step is steadier than one to the reference taken
# minutes earlier.
PAIRS=${CAPACITY_PAIRS:-5}
paired() {
    local -n out=$1
    local i before after r w
    before=$(wrk_once 5)
    for ((i = 0; i < PAIRS; i++)); do
        r=$(step "$2")
        after=$(wrk_once 5)
        w=$(calc '%.1f' "(${before#* } + ${after#* }) / 2")
        r="$r wrk_us=$w ratio=$(calc '%.2f' "$(field cpu_us "$r") / $w")"
        log "step: $r"
        out+=("$r")
        before=$after
    done
}

summary() {
    local r=$1 paired=
    shift
    if [[ "$1" == *ratio=* ]]; then paired=", paired with a wrk run each: $(med ratio "$@")x"; fi
    echo "offered $r/s: share<=1ms $(med share "$@")% p99 $(med p99_us "$@") us, skipped $(med skipped "$@"), failed $(med failed "$@"), CPU $(med cpu_us "$@") us/probe = $(calc '%.2f' "$(med cpu_us "$@") / $WRK_CPU")x wrk's $WRK_CPU$paired (probe threads $(med probe_us "$@") us, $(med sleeps "$@") sleeps/probe), nginx $(med nginx_us "$@") us/probe, other $(med other_cores "$@") cores of which steal $(med steal_cores "$@")"
}
if [[ -n "${CAPACITY_RATES:-}" ]]; then
    echo "$(nproc) CPUs ($CPU_MODEL), load average at start $LOAD_START; medians of $PAIRS runs (A B: 3 pairs)"
    for r in $CAPACITY_RATES; do
        if [[ -z "$AB" ]]; then
            ROWS=()
            paired ROWS "$r"
            summary "$r" "${ROWS[@]}"
            continue
        fi
        A_ROWS=() B_ROWS=()
        for i in 1 2 3; do
            BIN="$TMP/watchfire" ARGS=${WATCHFIRE_ARGS:-}
            A_ROWS+=("$(logged_step "$r")")
            BIN="$TMP/watchfire-b" ARGS=${WATCHFIRE_ARGS_B:-}
            B_ROWS+=("$(logged_step "$r")")
        done
        echo "A (${WATCHFIRE_BIN:-target/release/watchfire} ${WATCHFIRE_ARGS:-}) $(summary "$r" "${A_ROWS[@]}")"
        echo "B (${WATCHFIRE_BIN_B:-the same binary} ${WATCHFIRE_ARGS_B:-}) $(summary "$r" "${B_ROWS[@]}")"
    done
    exit 0
fi

# 2. Capacity: bisection.
LO=0
HI=$(calc '%d' "1.2 * $WRK_RATE")
RES=$(calc '%d' "0.04 * $WRK_RATE")
((RES < 100)) && RES=100
while ((HI - LO > RES)); do
    MID=$(((LO + HI) / 2 / 10 * 10))
    r=$(logged_step "$MID")
    for again in 1 2; do
        passes "$r" && break
        log "failed at $MID/s; again ($again of 2)"
        r=$(logged_step "$MID")
    done
    if passes "$r"; then LO=$MID; else HI=$MID; fi
done
CAP=$LO
if ((CAP == 0)); then
    log "no rate passed: capacity not found (see each step's other_cores: the CPU the rest of the machine used)"
    exit 1
fi
log "capacity: $CAP probes/s"

# 3. Around capacity.
AT70=() ATCAP=()
paired AT70 "$(calc '%d' "0.7 * $CAP")"
paired ATCAP "$CAP"
OVER12=$(logged_step "$(calc '%d' "1.2 * $CAP")")
OVER15=$(logged_step "$(calc '%d' "1.5 * $CAP")")

CPU70=$(med cpu_us "${AT70[@]}")
CPUCAP=$(med cpu_us "${ATCAP[@]}")
R70=$(med ratio "${AT70[@]}")
RCAP=$(med ratio "${ATCAP[@]}")
wrk_list() { for r in "$@"; do field wrk_us "$r"; done | paste -sd/; }
verdict() { awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN {ok = (op == ">=" ? v >= g : v <= g); print (ok ? "met" : "MISSED")}'; }
# Past capacity nothing but lag and skipped ticks may grow.
intact() {
    if [[ "$(field local_errors "$1")" == 0 && "$(field down "$1")" == 0 ]]; then echo intact; else echo BROKEN; fi
}
over() {
    local r=$1
    echo "lag p99 $(field p99_us "$r") us ($(field share "$r")% <= 1 ms), $(field skipped "$r") ticks skipped, $(field local_errors "$r") local errors, $(field failed "$r") failed, $(field down "$r") down"
}

echo
echo "capacity benchmark: $(nproc) CPUs ($CPU_MODEL), load average at start $LOAD_START; nginx 1 worker on $TARGET"
echo "targets every ${INTERVAL_MS} ms; ${WARMUP} s warm-up, ${SECS} s windows"
echo "wrk -t1 -c32 -d5s -H 'Connection: close': ${WRK_RATES[*]} req/s -> median $WRK_RATE; own CPU ${WRK_CPUS[*]} us/request -> median $WRK_CPU"
echo
FMT='%-44s %-58s %s\n'
# shellcheck disable=SC2059
{
    printf "$FMT" figure measured "goal / reference"
    printf "$FMT" "capacity (lag p99 <= 1 ms, nothing skipped)" "$CAP probes/s = $(calc '%.2f' "$CAP / $WRK_RATE")x wrk's req/s" "reference: wrk $WRK_RATE req/s"
    printf "$FMT" "CPU per probe at capacity ($PAIRS runs)" "$CPUCAP us = ${RCAP}x the wrk runs around each ($(wrk_list "${ATCAP[@]}") us)" "<= 1.1x: $(verdict "$RCAP" '<=' 1.1); $(calc '%.2f' "$CPUCAP / $WRK_CPU")x the first reference"
    printf "$FMT" "CPU per probe at 70 % of capacity ($PAIRS runs)" "$CPU70 us = ${R70}x the wrk runs around each ($(wrk_list "${AT70[@]}") us)" "<= 1.1x: $(verdict "$R70" '<=' 1.1); $(calc '%.2f' "$CPU70 / $WRK_CPU")x the first reference"
    printf "$FMT" "lag p99 at 70 % of capacity ($PAIRS runs)" "$(med p99_us "${AT70[@]}") us ($(med share "${AT70[@]}")% <= 1 ms)" "<= 1000 us: $(verdict "$(med share "${AT70[@]}")" '>=' 99)"
    printf "$FMT" "at 1.2x capacity ($(field rate "$OVER12")/s)" "$(over "$OVER12")" "0 local errors, 0 down: $(intact "$OVER12")"
    printf "$FMT" "at 1.5x capacity ($(field rate "$OVER15")/s)" "$(over "$OVER15")" "0 local errors, 0 down: $(intact "$OVER15")"
}
echo
echo "steps (probes/s offered: share <= 1 ms, p99, skipped, CPU us/probe, the probe threads' part, their sleeps per probe, other cores):"
for r in "${AT70[@]}" "${ATCAP[@]}" "$OVER12" "$OVER15"; do echo "  $r"; done
if [[ "$(intact "$OVER12")" != intact || "$(intact "$OVER15")" != intact ]]; then
    log "past capacity something broke (local errors or targets down): see above"
    exit 1
fi
