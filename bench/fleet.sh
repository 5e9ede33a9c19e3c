#!/usr/bin/env bash
# A large fleet on one box: N targets from file_sd JSON lists (100,000 per file), all on one
# nginx (1 worker, loopback) with distinct paths, probed every INTERVAL by a release watchfire.
#
#   bash bench/fleet.sh [N] [INTERVAL] [STEADY_SECONDS]     (defaults: 1000000 120s 60)
#
# Reports: config load time (`watchfire check` of the same config, and start to ready), RSS after
# load and after STEADY_SECONDS, schedule lag p99 and ticks skipped (from /metrics), the time and
# peak RSS of reloading the unchanged set (POST /-/reload, three times), the share of probes with
# lag <= 1 ms in the 2 s around each reload (per-target lag histograms summed; only when
# SCRAPE=1), and the /metrics scrape time and size. Bounded: every wait has a deadline; every
# process started is stopped on exit. Talks to 127.0.0.1 only.
#
# Environment: WATCHFIRE (binary; default target/release/watchfire, built when missing),
# SCRAPE (1 by default; 0 skips the /metrics figures, which at full detail and a million targets
# are gigabytes), DETAIL (a `metrics: { detail: ... }` level, written only when given).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

N=${1:-1000000}
INTERVAL=${2:-120s}
STEADY=${3:-60}
SCRAPE=${SCRAPE:-1}
BIN=${WATCHFIRE:-target/release/watchfire}
[[ -x "$BIN" ]] || cargo build --release --bin watchfire
NGINX=$(find_tool nginx)
[[ -n "$NGINX" ]] || install_packages nginx-light
NGINX=$(find_tool nginx)
raise_open_files

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 143' INT TERM

NGINX_PORT=$(free_port)
WF_PORT=$(free_port "$NGINX_PORT")
sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|$NGINX_PORT|g" bench/nginx.conf >"$TMP/nginx.conf"
"$NGINX" -c "$TMP/nginx.conf" -p "$TMP" >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
wait_port "$NGINX_PORT" "${PIDS[-1]}" nginx

log "writing $N targets in file_sd JSON lists of 100,000"
mkdir -p "$TMP/targets"
per=100000
for ((start = 0; start < N; start += per)); do
    end=$((start + per < N ? start + per : N))
    awk -v s="$start" -v e="$end" -v p="$NGINX_PORT" 'BEGIN {
        printf "[{\"labels\": {\"shard\": \"s%d\"}, \"targets\": [\n", s / 100000
        for (i = s; i < e; i++) printf "%s\"http://127.0.0.1:%d/t/%d\"\n", (i > s ? "," : ""), p, i
        print "]}]"
    }' >"$TMP/targets/$(printf '%07d' "$start").json"
done
{
    [[ -n "${DETAIL:-}" ]] && printf 'metrics:\n  detail: %s\n' "$DETAIL"
    printf 'file_sd:\n  - files: ["targets/*.json"]\n    interval: %s\n    timeout: 5s\n' "$INTERVAL"
    printf '    refresh_interval: 1h\n'
} >"$TMP/watchfire.yaml"
du -sh "$TMP/targets" | awk '{print "== file_sd files: " $1}' >&2

rss() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }
metric() { awk -v m="$1" '$1 == m {print $2}' "$TMP/metrics"; }

t0=$(now)
/usr/bin/time -f '%M' -o "$TMP/check.rss" "$BIN" check --config "$TMP/watchfire.yaml" >"$TMP/check.out"
echo "check: $(cat "$TMP/check.out"): $(since "$t0") s, peak RSS $(( $(cat "$TMP/check.rss") / 1024 )) MiB"

t0=$(now)
"$BIN" run --config "$TMP/watchfire.yaml" --storage.memory --listen "127.0.0.1:$WF_PORT" --max-concurrency 4096 \
    >"$TMP/watchfire.log" 2>&1 &
WF=$!
PIDS+=("$WF")
for _ in $(seq 1200); do
    curl -fsS "http://127.0.0.1:$WF_PORT/-/ready" >/dev/null 2>&1 && break
    kill -0 "$WF" 2>/dev/null || { log "watchfire exited"; tail "$TMP/watchfire.log" >&2; exit 1; }
    sleep 0.1
done
echo "start to ready: $(since "$t0") s, RSS $(rss "$WF") MiB (peak $(hwm "$WF") MiB)"

log "steady for $STEADY s"
sleep "$STEADY"
echo "steady: RSS $(rss "$WF") MiB (peak $(hwm "$WF") MiB), CPU $(ps -o times= -p "$WF") s"

scrape() {
    curl -fsS -o "$TMP/metrics" -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$WF_PORT/metrics"
}
# Probes so far and those with lag <= 1 ms, summed over every target's lag histogram.
lag_counts() {
    awk '/^watchfire_probe_schedule_lag_seconds_bucket/ && /le="0.001"/ {a += $2}
         /^watchfire_probe_schedule_lag_seconds_count/ {n += $2} END {printf "%d %d\n", a, n}' "$TMP/metrics"
}
if [[ "$SCRAPE" == 1 ]]; then
    read -r took bytes < <(scrape)
    echo "/metrics: $took s, $((bytes / 1048576)) MiB, $(grep -vc '^#' "$TMP/metrics") series"
    echo "lag p99 since start: $(awk '/^watchfire_schedule_lag_seconds\{quantile="0.99"\}/ {print $2 * 1000 " ms"}' "$TMP/metrics")"
    echo "ticks skipped: $(awk '/^watchfire_ticks_skipped_total/ {s += $2} END {print s + 0}' "$TMP/metrics")"
    echo "probes: $(awk '/^watchfire_probe_schedule_lag_seconds_count/ {s += $2} END {print s + 0}' "$TMP/metrics")"
fi

for i in 1 2 3; do
    [[ "$SCRAPE" == 1 ]] && { scrape >/dev/null; read -r a0 n0 < <(lag_counts); }
    before=$(hwm "$WF")
    t0=$(now)
    curl -fsS -X POST "http://127.0.0.1:$WF_PORT/-/reload" >/dev/null
    took=$(since "$t0")
    line="reload $i (unchanged): $took s, RSS $(rss "$WF") MiB, peak $(hwm "$WF") MiB (was $before)"
    if [[ "$SCRAPE" == 1 ]]; then
        sleep 2
        scrape >/dev/null
        read -r a1 n1 < <(lag_counts)
        line+=", lag <= 1 ms: $((a1 - a0)) of $((n1 - n0)) probes"
    fi
    echo "$line"
done
grep -c "config applied" "$TMP/watchfire.log" | awk '{print "config applied " $1 " times"}'
