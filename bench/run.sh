#!/usr/bin/env bash
# watchfire probe-rate / CPU / schedule-lag / memory benchmark against a local nginx.
#
#   bash bench/run.sh                  # full: ~2.5 minutes after the build (+ the build itself)
#   BENCH_QUICK=1 bash bench/run.sh    # quick: shorter windows, ~1 minute after the build
#
# Method
# - Everything runs on this machine and talks to 127.0.0.1 only. Every load is bounded in time
#   (wrk -d, the benchmark's window) and stops by itself; nginx is killed on exit (trap).
#   `ulimit -n` is raised to 65536, or to the hard limit when that is lower.
# - nginx (nginx-light) serves `200 ok\n` from bench/nginx.conf: 1 worker process,
#   worker_connections 4096, listen backlog 4096, no access log, error log at `crit` in a temp dir,
#   keep-alive allowed, `daemon off`, started in the background with `-p TMP -c TMP/nginx.conf`
#   on a free port below the ephemeral range.
# - The loopback limit: `wrk -t1 -c32 -d5s -H 'Connection: close'` (a fresh TCP connection per
#   request, like a probe) three times; the median req/s is the reference. wrk's own CPU time
#   (bash `time`, user+sys) per request is reported too: it is mostly kernel time, the floor any
#   client pays for a loopback connection (part of the server side's TCP work runs in the
#   sender's context on loopback and is charged to the client).
# - watchfire: benches/probe_rate.rs (which documents what it measures and how), built once with
#   `cargo bench --bench probe_rate --no-run` and then run as `cargo bench` would run it
#   (`probe_rate --bench --url ... --scenario ...`) from a private copy, so that a tree edited and
#   rebuilt by someone else during the run neither adds compile time between scenarios nor
#   changes the code under test. Probes run as in the `watchfire` binary: on the probe threads,
#   one per CPU (`--workers 2` sizes only the main tokio runtime, which here has nothing to do).
#   Four scenarios, each in its own process:
#   - rate: wrk's median rate offered (N targets every 100 ms, N = that rate / 10),
#     so the prober is asked for exactly the loopback limit it is judged against: achieved
#     probes/s (ticks it cannot serve are skipped, never made up) and CPU µs per probe over a 10 s
#     window; three runs, medians reported. Offering much more than the prober can serve makes
#     probes wait for a CPU past their timeout (80 ms): it measures overload, not throughput.
#   - keep-up: 80 % of wrk's median rate offered (the goal's rate), three runs: the CPU per
#     probe of a prober that keeps up (no skipped ticks), next to the saturated figure above.
#   - lag: 10,000 targets every 1 s (10,000/s), 10 s window: schedule lag p50/p99.
#   - memory: 100,000 targets every 10 s (10,000/s); the warm-up is one full interval so every
#     target has probed once and allocated its histograms; RSS per target = (VmRSS at the end −
#     VmRSS before the targets were built) / 100,000. Only meaningful when the prober keeps up
#     (`unprobed` 0, few probes in flight): a prober that falls behind holds up to
#     max_concurrency connections and grows its histograms with the lag.
#   - keep-0g, lag-0g: keep-up and lag once more each with `--min-wake-gap-us 0` (a probe
#     thread wakes at every planned start instead of at most once per 400 µs): what the
#     default coalescing saves in CPU and costs in lag, measured in the same run. No goal.
#   Every scenario also reports failures by reason (expected 0) and skipped ticks.
# - Lag figures: `lag p50/p99` are the runtime's HDR quantiles, cumulative since start (they
#   include the warm-up); `win ≤1ms` is exact for the window only (share of probes with lag
#   ≤ 1 ms, from the per-target Prometheus buckets: p99 ≤ 1 ms ⇔ ≥ 99 %), `win p99` its bucket
#   interpolation.
# - The machine may be shared: every figure but CPU per probe moves with other load. Each row
#   shows the CPU the rest of the machine used during its window (`other`) and the load average;
#   quote numbers from runs where `other` is about nginx's share only. Each run's human-readable
#   report goes to stderr as it finishes; the table and the raw RESULT lines to stdout.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=${BENCH_QUICK:-0}
if [[ "$QUICK" == 1 ]]; then
    WRK_SECS=2
    RATE_SECS=3
    LAG_SECS=4
    MEM_SECS=2
else
    WRK_SECS=5
    RATE_SECS=10
    LAG_SECS=10
    MEM_SECS=10
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh

NGINX=$(find_tool nginx)
WRK=$(find_tool wrk)
if [[ -z "$NGINX" || -z "$WRK" ]]; then
    install_packages nginx-light wrk
    NGINX=$(find_tool nginx)
    WRK=$(find_tool wrk)
fi

# Probes and wrk open one socket each per request in flight.
raise_open_files
log "open files limit: $(ulimit -n)"

bench_tmp bench
start_nginx
URL=$TARGET
log "nginx $NGINX_PID on $URL"

log "building the benchmark (cargo bench --bench probe_rate --no-run)"
BIN_SRC=$(cargo bench --bench probe_rate --no-run --message-format=json-render-diagnostics |
    grep -o '"executable":"[^"]*probe_rate[^"]*"' | tail -1 | cut -d'"' -f4)
[[ -x "$BIN_SRC" ]] || { log "cannot find the benchmark executable"; exit 1; }
# A private copy: every scenario runs the same code even if the tree is rebuilt meanwhile.
BIN="$TMP/probe_rate"
cp "$BIN_SRC" "$BIN"
log "benchmark binary: $BIN_SRC"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# 1. The loopback limit: wrk, one connection per request.
WRK_RATES=()
WRK_CPUS=()
for i in 1 2 3; do
    # wrk's own CPU (user+sys) per request: what the kernel and a minimal C client cost.
    TIMEFORMAT='%U %S'
    { time "$WRK" -t1 -c32 -d"${WRK_SECS}s" -H 'Connection: close' "$URL" >"$TMP/wrk.$i.txt"; } \
        2>"$TMP/wrk.$i.time"
    out=$(cat "$TMP/wrk.$i.txt")
    rate=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v n="$requests" '{printf "%.1f", (n > 0 ? ($1 + $2) * 1e6 / n : 0)}' "$TMP/wrk.$i.time")
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$out" || true)
    log "wrk run $i: $rate req/s, wrk CPU $cpu us/request ${errors:+($errors)}"
    WRK_RATES+=("$rate")
    WRK_CPUS+=("$cpu")
done
WRK_MEDIAN=$(printf '%s\n' "${WRK_RATES[@]}" | median)
WRK_CPU=$(printf '%s\n' "${WRK_CPUS[@]}" | median)

# 2. watchfire.
bench() {
    local name=$1
    shift
    local out
    out=$("$BIN" --bench --url "$URL" --scenario "$name" "$@" 2>&1) || {
        echo "$out" >&2
        log "benchmark $name failed"
        exit 1
    }
    grep -v '^RESULT' <<<"$out" | sed 's/^/   /' >&2
    grep '^RESULT' <<<"$out" | tail -1
}

# Three runs of SCENARIO with TARGETS targets every 100 ms, their RESULT lines appended to the
# array named by the first argument: three_runs ARRAY SCENARIO TARGETS
three_runs() {
    local -n results=$1
    local scenario=$2 targets=$3 i
    for i in 1 2 3; do
        log "$scenario run $i: $targets targets every 100 ms, ${RATE_SECS} s"
        results+=("$(bench "$scenario" --targets "$targets" --interval-ms 100 --duration-s "$RATE_SECS")")
    done
}

# Offer wrk's rate: N targets every 100 ms.
RATE_TARGETS=$(awk -v r="$WRK_MEDIAN" 'BEGIN {n = int((r + 9) / 10); print (n < 1 ? 1 : n)}')
RATE_RESULTS=()
three_runs RATE_RESULTS rate "$RATE_TARGETS"
# The goal's rate, 80 % of wrk's: does the prober keep up, and at what CPU per probe?
KEEP_TARGETS=$(awk -v r="$WRK_MEDIAN" 'BEGIN {n = int((0.8 * r + 9) / 10); print (n < 1 ? 1 : n)}')
KEEP_RESULTS=()
three_runs KEEP_RESULTS keep-up "$KEEP_TARGETS"
log "lag: 10000 targets every 1 s, ${LAG_SECS} s"
LAG=$(bench lag --targets 10000 --interval-ms 1000 --duration-s "$LAG_SECS")
# What the default wake-up coalescing (--min-wake-gap 400us) trades: the same keep-up and lag
# scenarios once each with every probe thread woken at each planned start.
log "keep-up without wake-up coalescing (--min-wake-gap-us 0), ${RATE_SECS} s"
KEEP_NOGAP=$(bench keep-up --targets "$KEEP_TARGETS" --interval-ms 100 --duration-s "$RATE_SECS" --min-wake-gap-us 0)
log "lag without wake-up coalescing (--min-wake-gap-us 0), ${LAG_SECS} s"
LAG_NOGAP=$(bench lag --targets 10000 --interval-ms 1000 --duration-s "$LAG_SECS" --min-wake-gap-us 0)
log "memory: 100000 targets every 10 s, warm-up 10 s, ${MEM_SECS} s"
MEM=$(bench memory --targets 100000 --interval-ms 10000 --duration-s "$MEM_SECS")

# The median of field KEY over RESULT lines: med KEY RESULT...
med() {
    local k=$1 r
    shift
    for r in "$@"; do field "$k" "$r"; done | median
}
KEEP_PPS=$(med probes_per_s "${KEEP_RESULTS[@]}")
KEEP_CPU=$(med cpu_us_per_probe "${KEEP_RESULTS[@]}")
KEEP_SKIPPED=$(med skipped "${KEEP_RESULTS[@]}")
RATE_PPS=$(med probes_per_s "${RATE_RESULTS[@]}")
RATE_CPU=$(med cpu_us_per_probe "${RATE_RESULTS[@]}")
RATIO=$(awk -v a="$RATE_PPS" -v b="$WRK_MEDIAN" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')

# 3. The table.
FMT='%-7s %9s %7s %7s %7s %8s %8s %8s %8s %7s %8s %6s %5s\n'
row() {
    local name=$1 r=$2
    # shellcheck disable=SC2059
    printf "$FMT" "$name" \
        "$(field probes_per_s "$r")" "$(field cpu_us_per_probe "$r")" \
        "$(field cpu_user_us_per_probe "$r")" "$(field cpu_sys_us_per_probe "$r")" \
        "$(field lag_p50_us "$r")" "$(field lag_p99_us "$r")" \
        "$(field win_lag_p99_us "$r")" "$(field win_lag_le_1ms_pct "$r")" \
        "$(field rss_per_target_bytes "$r")" "$(field failures "$r")/$(field skipped "$r")" \
        "$(field other_cores "$r")" "$(field loadavg "$r")"
}
verdict() {
    awk -v v="$1" -v op="$2" -v g="$3" \
        'BEGIN {ok = (op == ">=" ? v >= g : v <= g); print (ok ? "PASS" : "MISS")}'
}

echo
echo "watchfire probe_rate benchmark ($([[ "$QUICK" == 1 ]] && echo quick || echo full)): $(nproc) CPUs, nginx 1 worker on $URL"
echo "wrk -t1 -c32 -d${WRK_SECS}s -H 'Connection: close': ${WRK_RATES[*]} req/s -> median $WRK_MEDIAN req/s; wrk's own CPU ${WRK_CPUS[*]} -> median $WRK_CPU us/request"
echo
# shellcheck disable=SC2059
printf "$FMT" scenario probes/s cpu_us user_us sys_us lag_p50 lag_p99 win_p99 win_le1ms rss/tgt fail/skip other load
# shellcheck disable=SC2059
printf "$FMT" "" "" /probe /probe /probe "us,cum" "us,cum" "us,est" "%" bytes "" cores 1min
for i in 0 1 2; do row "rate$((i + 1))" "${RATE_RESULTS[$i]}"; done
for i in 0 1 2; do row "keep$((i + 1))" "${KEEP_RESULTS[$i]}"; done
row lag "$LAG"
row memory "$MEM"
row keep-0g "$KEEP_NOGAP"
row lag-0g "$LAG_NOGAP"
echo "memory: RSS $(field rss_per_target_bytes "$MEM") B/target, of which HDR counts $(field hdr_bytes_per_target "$MEM") B; peak RSS $(($(field rss_peak_bytes "$MEM") / 1048576)) MiB; $(field unprobed_after_warmup "$MEM") targets unprobed after the warm-up; $(field in_flight_end "$MEM") probes in flight at the end"
echo "rate = $RATE_TARGETS targets every 100 ms ($((RATE_TARGETS * 10))/s offered = wrk's median), keep = $KEEP_TARGETS every 100 ms (80 % of it), lag = 10,000 every 1 s, memory = 100,000 every 10 s."
echo "keep-0g, lag-0g: keep and lag again without wake-up coalescing (--min-wake-gap 0s; the rows above use the default 400us)."
echo "lag_p50/p99: runtime HDR, cumulative incl. warm-up; win_*: this window only, from lag buckets."
echo "other = CPU cores used during the window by everything else on the machine (nginx, other users)."
echo
LAG_LE=$(field win_lag_le_1ms_pct "$LAG")
LAG_P99=$(field lag_p99_us "$LAG")
MEM_RSS=$(field rss_per_target_bytes "$MEM")
GFMT='%-62s %-26s %s\n'
# shellcheck disable=SC2059
{
    printf "$GFMT" goal measured verdict
    printf "$GFMT" "rate: probes/s >= 80% of wrk's $WRK_MEDIAN req/s (median of 3)" \
        "$RATE_PPS/s = ${RATIO}x wrk" "$(verdict "$RATIO" '>=' 0.80)"
    printf "$GFMT" "rate: CPU per probe <= 50 us, wrk's rate offered (saturated)" \
        "$RATE_CPU us (wrk: $WRK_CPU)" "$(verdict "$RATE_CPU" '<=' 50)"
    printf "$GFMT" "keep-up: CPU per probe <= 50 us at 80% of wrk's rate" \
        "$KEEP_CPU us, $KEEP_PPS/s, $KEEP_SKIPPED skipped" "$(verdict "$KEEP_CPU" '<=' 50)"
    printf "$GFMT" "lag: 10k targets @1s, p99 lag <= 1 ms (window, exact)" \
        "${LAG_LE}% <= 1 ms" "$(verdict "$LAG_LE" '>=' 99)"
    printf "$GFMT" "lag: 10k targets @1s, p99 lag <= 1 ms (HDR, cumulative)" \
        "$LAG_P99 us" "$(verdict "$LAG_P99" '<=' 1000)"
    printf "$GFMT" "memory: 100k targets @10s, RSS per target <= 10 KB" \
        "$MEM_RSS bytes" "$(verdict "$MEM_RSS" '<=' 10000)"
}
echo
echo "raw:"
printf '%s\n' "${RATE_RESULTS[@]}" "${KEEP_RESULTS[@]}" "$LAG" "$MEM" "$KEEP_NOGAP" "$LAG_NOGAP"
