#!/usr/bin/env bash
# A/B of two `watchfire` binaries on the scheduled paths, paired and alternating in one run:
#
#   bash bench/ab.sh OLD_BINARY NEW_BINARY [TARGETS]    # 3 pairs per path, ~2 minutes
#
# e.g. the commit before a change against the change:
#   git worktree add /tmp/base BASE_COMMIT && (cd /tmp/base && cargo build --release)
#   cargo build --release && bash bench/ab.sh /tmp/base/target/release/watchfire target/release/watchfire
#
# Method
# - nginx (bench/nginx.conf: 1 worker, `200 ok\n`) on a free loopback port is the target.
# - Each binary runs `watchfire run --config FILE --listen 127.0.0.1:PORT` with TARGETS targets
#   (default 3000) probed every 1 s, timeout 900 ms: the native prober (`url:`) and the blackbox
#   http module (`module: http_2xx`), each path measured A, B, A, B, A, B.
# - CPU per probe = delta of the process' utime+stime (/proc/PID/stat) over a 5 s window that
#   starts 3 s after start-up, divided by TARGETS x 5. A run with skipped ticks
#   (`watchfire_ticks_skipped_total` > 0) did not keep up and is reported as invalid.
# - Reported: per path, each run's CPU per probe, the medians, and the median of the paired
#   ratios B / A (below 1: B costs less).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $# -ge 2 ]] || { echo "usage: bash bench/ab.sh OLD_BINARY NEW_BINARY [TARGETS]" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source bench/lib.sh

NGINX=$(find_tool nginx)
[[ -n "$NGINX" ]] || { install_packages nginx-light; NGINX=$(find_tool nginx); }
raise_open_files
HZ=$(getconf CLK_TCK)
N=${3:-3000}
SECS=5
WARMUP=3

bench_tmp ab-bench
# Private copies: a rebuild during the run changes neither side.
cp "$1" "$TMP/a"
cp "$2" "$TMP/b"
start_nginx

for kind in native module; do
    {
        printf 'modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n'
        echo "defaults: { interval: 1s, timeout: 900ms }"
        echo "targets:"
        for ((i = 0; i < N; i++)); do
            if [[ "$kind" == module ]]; then
                echo "  - { name: t$i, url: '$TARGET', module: http_2xx }"
            else
                echo "  - { name: t$i, url: '$TARGET' }"
            fi
        done
    } >"$TMP/$kind.yml"
done

# Runs binary $1 on path $2 once; prints the CPU per probe, or `invalid`.
one_run() {
    local bin=$1 kind=$2 port pid t0 t1 skip
    port=$(free_port "$NGINX_PORT")
    "$TMP/$bin" run --config "$TMP/$kind.yml" --listen "127.0.0.1:$port" >"$TMP/wf.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" watchfire
    sleep "$WARMUP"
    t0=$(ticks "$pid")
    sleep "$SECS"
    t1=$(ticks "$pid")
    skip=$(curl -s "http://127.0.0.1:$port/metrics" |
        awk '$1 ~ /^watchfire_ticks_skipped_total/ {s += $2} END {print s + 0}')
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [[ "$skip" != 0 ]]; then
        echo invalid
        return
    fi
    awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$((N * SECS))" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}'
}

echo "A/B: A=$1 B=$2; $N targets @ 1 s; $(nproc) CPUs; ${SECS} s windows"
for kind in native module; do
    a_runs="" b_runs="" ratios=""
    for i in 1 2 3; do
        a=$(one_run a "$kind")
        b=$(one_run b "$kind")
        log "$kind pair $i: A $a us/probe, B $b us/probe"
        a_runs+="$a " b_runs+="$b "
        if [[ "$a" != invalid && "$b" != invalid ]]; then
            ratios+="$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}') "
        fi
    done
    med_a=$(tr ' ' '\n' <<<"$a_runs" | grep -E '^[0-9.]+$' | median)
    med_b=$(tr ' ' '\n' <<<"$b_runs" | grep -E '^[0-9.]+$' | median)
    med_r=$(tr ' ' '\n' <<<"$ratios" | grep -E '^[0-9.]+$' | median)
    printf '%-7s A: %-20s median %-6s  B: %-20s median %-6s  B/A paired median: %s\n' \
        "$kind" "$a_runs" "$med_a" "$b_runs" "$med_b" "${med_r:-n/a}"
done
