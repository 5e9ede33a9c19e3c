#!/usr/bin/env bash
# The probe path with the store on disk (a SQLite file, the default of `watchfire run`) against
# the store in memory (`--storage.memory`, the same writer on an in-memory SQLite): CPU per
# scheduled probe of the real binary, paired runs alternating in one session. (There is no
# build without a store; `bash bench/ab.sh OLD NEW` compares with a commit before it.)
#
#   bash bench/store_ab.sh                      # 5,000 targets @ 1 s, 3 pairs of 20 s windows
#   BENCH_TARGETS=2000 BENCH_SECS=10 bash bench/store_ab.sh
#   WATCHFIRE_BIN=path/to/watchfire bash bench/store_ab.sh   # a release binary already built
#
# Method
# - Loopback only; nginx (bench/nginx.conf, 1 worker) is the target of N native targets at a 1 s
#   interval; everything is stopped on exit (trap).
# - Each run starts `watchfire run` afresh (the store's runs on a new data directory), waits
#   5 s for the schedule to settle, then measures a window: CPU = delta of utime+stime
#   (/proc/PID/stat), probes = delta of the sum of `watchfire_probes_total` from /metrics.
#   The window spans at least one minute boundary's rollup flush when BENCH_SECS >= 60.
# - Reported: CPU per probe of each run, the medians, and the on/off ratio of each pair and
#   its median (goal: within 5 %).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${BENCH_TARGETS:-5000}
SECS=${BENCH_SECS:-20}
# shellcheck source=bench/lib.sh
source bench/lib.sh
NGINX=$(find_tool nginx)
[[ -n "$NGINX" ]] || { install_packages nginx-light; NGINX=$(find_tool nginx); }
raise_open_files
bench_tmp store-ab
release_binary
start_nginx
{
    echo "targets:"
    for i in $(seq 1 "$N"); do
        printf '  - name: t%d\n    url: http://127.0.0.1:%d/\n    interval: 1s\n    timeout: 900ms\n' "$i" "$NGINX_PORT"
    done
} >"$TMP/targets.yml"

probes() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^watchfire_probes_total\{/ {s += $NF} END {printf "%.0f", s}'; }
HZ=$(getconf CLK_TCK)

# Runs one window with the extra flags "$2..."; prints CPU us per probe.
run() {
    local name=$1 port pid t0 t1 p0 p1
    shift
    port=$(free_port "$NGINX_PORT")
    "$BIN" run --config "$TMP/targets.yml" --listen "127.0.0.1:$port" "$@" >"$TMP/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" watchfire
    sleep 5
    t0=$(ticks "$pid"); p0=$(probes "$port")
    sleep "$SECS"
    t1=$(ticks "$pid"); p1=$(probes "$port")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    awk -v t="$((t1 - t0))" -v p="$((p1 - p0))" -v hz="$HZ" 'BEGIN {printf "%.1f", t / hz * 1e6 / p}'
}

declare -a OFF=() ON=() RATIO=()
for i in 1 2 3; do
    off=$(run "off$i" --storage.memory)
    on=$(run "on$i" --storage.path "$TMP/data$i")
    log "pair $i: store in memory $off us/probe, on disk $on us/probe"
    OFF+=("$off"); ON+=("$on")
    RATIO+=("$(awk -v a="$off" -v b="$on" 'BEGIN {printf "%.3f", b / a}')")
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
echo
echo "store A/B: $N targets @ 1 s against nginx, ${SECS} s windows, 2 CPUs"
echo "store in memory (--storage.memory): ${OFF[*]} -> median $(med "${OFF[*]}") us/probe"
echo "store on disk (SQLite file):        ${ON[*]} -> median $(med "${ON[*]}") us/probe"
echo "disk / memory per pair: ${RATIO[*]} -> median $(med "${RATIO[*]}") (goal <= 1.05)"
