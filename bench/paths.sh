#!/usr/bin/env bash
# CPU per probe of each way a probe runs through the real `watchfire run`, side by side in one
# run, with the references measured in the same minutes:
#
#   bash bench/paths.sh                  # 3 runs of 5 s per path: ~3 minutes after the build
#   BENCH_QUICK=1 bash bench/paths.sh    # 3 runs of 2 s
#   WATCHFIRE_BIN=path/to/watchfire bash bench/paths.sh   # a release binary already built
#
# Method
# - Everything runs on this machine and talks to 127.0.0.1 only; nginx, watchfire and the
#   exporter are stopped on exit (trap).
# - Target: nginx (bench/nginx.conf: 1 worker, `200 ok\n`, no access log) on a free port.
# - Binary: `target/release/watchfire` (cargo build --release), run from a private copy as
#   `watchfire run --config FILE --listen 127.0.0.1:PORT`, exactly as a user runs it.
# - References:
#   - wrk's own CPU per request: `wrk -t1 -c32 -dS -H 'Connection: close'` on nginx (a fresh
#     connection per request, as a probe), user+sys of wrk from `time`, per request;
#   - blackbox_exporter (Debian's package) answering the same /probe load as watchfire.
# - Paths, each measured 3 times, alternating:
#   - probe:    `/probe?target=NGINX&module=http_2xx` driven by `wrk -t1 -c32 -dS` (32 scrapes in
#               flight, each one probe); watchfire and the exporter alike;
#   - native:   N scheduled targets (`url:` nginx, interval 1 s), watchfire's own HTTP prober;
#   - module:   N scheduled targets (`module: http_2xx`, `url:` nginx, interval 1 s), the module's
#               prober, as `/probe` runs it.
#   - paced /probe: the /probe path again, at the scheduled paths' rate (wrk -c32 with a Lua
#               delay() of 32/N s per connection between requests): the module compared with
#               /probe at one load, not with /probe saturated (where each wake-up serves many).
#   N = 80 % of watchfire's median /probe rate (at most 20,000): the scheduled paths run at a
#   rate the /probe path has shown this machine can take, every tick served.
# - CPU per probe = delta of watchfire's utime+stime (/proc/PID/stat, clock ticks) over the
#   window / probes in the window. /probe: probes = wrk's requests. Scheduled: the window starts
#   3 s after start-up (every target has run) and probes = N x window seconds (each target runs
#   once a second, starts spread evenly); the run is reported invalid when any tick was skipped
#   (`watchfire_ticks_skipped_total`, read after the window).
# - Reported: each path's median CPU per probe as a multiple of wrk's median CPU per request,
#   /probe ÷ native and module ÷ /probe, and watchfire ÷ exporter for /probe (rate and CPU).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=${BENCH_QUICK:-0}
SECS=5
[[ "$QUICK" == 1 ]] && SECS=2
WARMUP=3

# shellcheck source=bench/lib.sh
source bench/lib.sh

NGINX=$(find_tool nginx)
WRK=$(find_tool wrk)
EXPORTER=$(find_tool prometheus-blackbox-exporter)
if [[ -z "$NGINX" || -z "$WRK" || -z "$EXPORTER" ]]; then
    install_packages nginx-light wrk prometheus-blackbox-exporter
    NGINX=$(find_tool nginx)
    WRK=$(find_tool wrk)
    EXPORTER=$(find_tool prometheus-blackbox-exporter)
fi
raise_open_files
HZ=$(getconf CLK_TCK)

bench_tmp paths-bench
release_binary
start_nginx
MODULES="modules:
  http_2xx:
    prober: http
    timeout: 5s"
echo "$MODULES" >"$TMP/probe.yml"

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }

# Starts `watchfire run` on CONFIG; sets WF_PID and WF_PORT.
start_watchfire() {
    WF_PORT=$(free_port "$NGINX_PORT")
    "$BIN" run --config "$1" --listen "127.0.0.1:$WF_PORT" >"$TMP/wf.log" 2>&1 &
    WF_PID=$!
    PIDS+=("$WF_PID")
    wait_port "$WF_PORT" "$WF_PID" watchfire
}

stop_watchfire() {
    kill "$WF_PID" 2>/dev/null || true
    wait "$WF_PID" 2>/dev/null || true
}

# 1. wrk's own CPU per Connection: close request.
wrk_reference "$SECS"

# 2. /probe: watchfire and the exporter, alternating.
QUERY="/probe?target=$TARGET&module=http_2xx"
start_watchfire "$TMP/probe.yml"
BB_PORT=$(free_port "$NGINX_PORT" "$WF_PORT")
"$EXPORTER" --config.file="$TMP/probe.yml" --web.listen-address="127.0.0.1:$BB_PORT" >"$TMP/bb.log" 2>&1 &
BB_PID=$!
PIDS+=("$BB_PID")
wait_port "$BB_PORT" "$BB_PID" blackbox_exporter
for port in "$WF_PORT" "$BB_PORT"; do
    ok=$(curl -s "http://127.0.0.1:$port$QUERY" | awk '$1 == "probe_success" {print $2}')
    [[ "$ok" == 1 ]] || { log "probe_success on :$port is '$ok', not 1"; exit 1; }
done
declare -A RATES CPUS
probe_run() {
    local name=$1 port=$2 pid=$3 t0 t1 out n rate cpu
    t0=$(ticks "$pid")
    out=$("$WRK" -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$port$QUERY")
    t1=$(ticks "$pid")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rate=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    cpu=$(awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", (n > 0 ? d / hz * 1e6 / n : 0)}')
    if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
        log "$name: errors: $(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ')"
    fi
    log "$name /probe: $rate probes/s, $cpu us CPU/probe"
    RATES[$name]+="$rate "
    CPUS[$name]+="$cpu "
}
for i in 1 2 3; do
    probe_run watchfire "$WF_PORT" "$WF_PID"
    probe_run exporter "$BB_PORT" "$BB_PID"
done
stop_watchfire
kill "$BB_PID" 2>/dev/null || true
WF_RATE=$(med "${RATES[watchfire]}")
BB_RATE=$(med "${RATES[exporter]}")
PROBE_CPU=$(med "${CPUS[watchfire]}")
BB_CPU=$(med "${CPUS[exporter]}")

# 3. Scheduled paths at 80 % of watchfire's /probe rate.
N=$((WF_RATE * 8 / 10))
((N > 20000)) && N=20000
scheduled_config() {
    local kind=$1 i
    echo "$MODULES"
    echo "defaults: { interval: 1s, timeout: 900ms }"
    echo "targets:"
    for ((i = 0; i < N; i++)); do
        if [[ "$kind" == module ]]; then
            echo "  - { name: t$i, url: '$TARGET', module: http_2xx }"
        else
            echo "  - { name: t$i, url: '$TARGET' }"
        fi
    done
}
skipped() {
    curl -s "http://127.0.0.1:$WF_PORT/metrics" |
        awk '$1 ~ /^watchfire_ticks_skipped_total/ {s += $2} END {print s + 0}'
}
declare -A SCHED
sched_run() {
    local kind=$1 t0 t1 cpu skip
    scheduled_config "$kind" >"$TMP/$kind.yml"
    start_watchfire "$TMP/$kind.yml"
    sleep "$WARMUP"
    t0=$(ticks "$WF_PID")
    sleep "$SECS"
    t1=$(ticks "$WF_PID")
    skip=$(skipped)
    stop_watchfire
    cpu=$(awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$((N * SECS))" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
    if [[ "$skip" != 0 ]]; then
        log "$kind: $skip ticks skipped: this run did not keep up (not counted)"
        return
    fi
    log "$kind: $N targets @ 1 s, $cpu us CPU/probe"
    SCHED[$kind]+="$cpu "
}
# /probe paced to the scheduled paths' rate: 32 connections, each waiting 32/N s between its
# requests (wrk's Lua delay()), so that /probe and the scheduled module are compared at one load.
PACE_MS=$(awk -v n="$N" 'BEGIN {printf "%d", (n > 0 ? 32000 / n : 1000)}')
echo "function delay() return $PACE_MS end" >"$TMP/pace.lua"
paced_run() {
    local t0 t1 out n rate cpu
    start_watchfire "$TMP/probe.yml"
    "$WRK" -t1 -c32 -d"${WARMUP}s" -s "$TMP/pace.lua" "http://127.0.0.1:$WF_PORT$QUERY" >/dev/null
    t0=$(ticks "$WF_PID")
    out=$("$WRK" -t1 -c32 -d"${SECS}s" -s "$TMP/pace.lua" "http://127.0.0.1:$WF_PORT$QUERY")
    t1=$(ticks "$WF_PID")
    stop_watchfire
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rate=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    cpu=$(awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", (n > 0 ? d / hz * 1e6 / n : 0)}')
    log "paced /probe: $rate probes/s, $cpu us CPU/probe"
    SCHED[paced]+="$cpu "
    PACED_RATES+="$rate "
}
PACED_RATES=""
for i in 1 2 3; do
    sched_run native
    sched_run module
    paced_run
done
NATIVE_CPU=$(med "${SCHED[native]:-}")
MODULE_CPU=$(med "${SCHED[module]:-}")
PACED_CPU=$(med "${SCHED[paced]:-}")

x() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo
echo "paths benchmark: $(nproc) CPUs; nginx 1 worker on $TARGET; ${SECS} s windows; $(${EXPORTER} --version 2>&1 | head -1)"
echo
echo "wrk -H 'Connection: close' on nginx: ${WRK_RATES[*]} req/s; own CPU ${WRK_CPUS[*]} us/request -> median $WRK_CPU"
echo
FMT='%-34s %-24s %10s %12s\n'
# shellcheck disable=SC2059
printf "$FMT" path "CPU us/probe (runs)" median "x wrk's CPU"
# shellcheck disable=SC2059
printf "$FMT" "scheduled native, $N @ 1 s" "${SCHED[native]:-}" "$NATIVE_CPU" "$(x "$NATIVE_CPU" "$WRK_CPU")"
# shellcheck disable=SC2059
printf "$FMT" "scheduled module, $N @ 1 s" "${SCHED[module]:-}" "$MODULE_CPU" "$(x "$MODULE_CPU" "$WRK_CPU")"
# shellcheck disable=SC2059
printf "$FMT" "/probe paced (${PACED_RATES% }/s)" "${SCHED[paced]:-}" "$PACED_CPU" "$(x "$PACED_CPU" "$WRK_CPU")"
# shellcheck disable=SC2059
printf "$FMT" "/probe (wrk -c32), watchfire" "${CPUS[watchfire]}" "$PROBE_CPU" "$(x "$PROBE_CPU" "$WRK_CPU")"
# shellcheck disable=SC2059
printf "$FMT" "/probe (wrk -c32), exporter" "${CPUS[exporter]}" "$BB_CPU" "$(x "$BB_CPU" "$WRK_CPU")"
echo
echo "/probe rate: watchfire ${RATES[watchfire]}-> $WF_RATE/s, exporter ${RATES[exporter]}-> $BB_RATE/s: $(x "$WF_RATE" "$BB_RATE")x (goal >= 5x)"
echo "/probe CPU per probe: $(x "$BB_CPU" "$PROBE_CPU")x less than the exporter's"
echo "/probe / scheduled native CPU per probe: $(x "$PROBE_CPU" "$NATIVE_CPU")x (goal <= 1.3x)"
echo "scheduled module / /probe CPU per probe: $(x "$MODULE_CPU" "$PROBE_CPU")x at full /probe load; $(x "$MODULE_CPU" "$PACED_CPU")x at the same rate (goal <= 1x)"
