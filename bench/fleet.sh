#!/usr/bin/env bash
# A large fleet on one box: N targets from file_sd JSON lists (100,000 per file), or written
# inline under `targets:` (INLINE=1), all on one nginx (1 worker, loopback) with distinct paths,
# probed every INTERVAL by a release watchfire.
#
#   bash bench/fleet.sh [N] [INTERVAL] [STEADY_SECONDS]     (defaults: 1000000 120s 60)
#
# Reports: config load time (`watchfire check` of the same config, and start to ready), RSS after
# load and after STEADY_SECONDS, schedule lag p99 and ticks skipped (from /metrics), the time and
# RSS of reloading the unchanged set (POST /-/reload, RELOADS times: the time of the answer; RSS
# after it and its peak, from /proc), the share of probes with lag <= 1 ms in the 2 s around
# each reload and in 2 s with no reload just before (from the per-thread lag histograms; only
# when SCRAPE=1), and the /metrics scrape
# time and size. Bounded: every wait has a deadline; every process started is stopped on exit.
# Talks to 127.0.0.1 only.
#
# Environment: WATCHFIRE (binary; default target/release/watchfire, built when missing), SCRAPE
# (1 by default; 0 skips the /metrics figures, which at a million targets are about a gigabyte),
# DETAIL (a `metrics: { detail: ... }` level, written only when given), AGGREGATE (`shard`: the
# fleet aggregates by the `shard` label every target has, 10 values at a million, with only the
# failing targets' own series), INLINE (1: the targets
# under `targets:` in the config file itself, for N up to about 50,000), RELOADS (unchanged
# reloads, default 3), CHANGED (1: one more reload after adding one target), PERF_OUT (a path:
# `perf record` of watchfire during the reloads is written there, for `perf report -i PATH`).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

N=${1:-1000000}
INTERVAL=${2:-120s}
STEADY=${3:-60}
SCRAPE=${SCRAPE:-1}
INLINE=${INLINE:-0}
RELOADS=${RELOADS:-3}
CHANGED=${CHANGED:-0}
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

# The config's `metrics:` section, when DETAIL or AGGREGATE asks for one.
metrics_section() {
    [[ -n "${DETAIL:-}${AGGREGATE:-}" ]] || return 0
    printf 'metrics:\n'
    if [[ -n "${DETAIL:-}" ]]; then printf '  detail: %s\n' "$DETAIL"; fi
    if [[ -n "${AGGREGATE:-}" ]]; then printf '  aggregate_by: [%s]\n' "$AGGREGATE"; fi
    return 0
}

if [[ "$INLINE" == 1 ]]; then
    log "writing $N targets under targets:"
    {
        metrics_section
        printf 'defaults:\n  interval: %s\n  timeout: 5s\n  labels: { shard: s0 }\ntargets:\n' "$INTERVAL"
        awk -v n="$N" -v p="$NGINX_PORT" 'BEGIN {
            for (i = 0; i < n; i++) printf "  - { name: t%d, url: \"http://127.0.0.1:%d/t/%d\" }\n", i, p, i
        }'
    } >"$TMP/watchfire.yaml"
    du -sh "$TMP/watchfire.yaml" | awk '{print "== config file: " $1}' >&2
else
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
        metrics_section
        printf 'file_sd:\n  - files: ["targets/*.json"]\n    interval: %s\n    timeout: 5s\n' "$INTERVAL"
        printf '    refresh_interval: 1h\n'
    } >"$TMP/watchfire.yaml"
    du -sh "$TMP/targets" | awk '{print "== file_sd files: " $1}' >&2
fi

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
for ((waited = 0; waited < STEADY; waited += 30)); do
    step=$((STEADY - waited < 30 ? STEADY - waited : 30))
    sleep "$step"
    echo "after $((waited + step)) s: RSS $(rss "$WF") MiB"
done
echo "steady: RSS $(rss "$WF") MiB (peak $(hwm "$WF") MiB), CPU $(ps -o times= -p "$WF") s"

scrape() {
    curl -fsS -o "$TMP/metrics" -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$WF_PORT/metrics"
}
# Probes so far and those with lag <= 1 ms, summed over the probe threads' lag histograms.
lag_counts() {
    awk '/^watchfire_schedule_lag_seconds_bucket/ && /le="0.001"/ {a += $2}
         /^watchfire_schedule_lag_seconds_count/ {n += $2} END {printf "%d %d\n", a, n}' "$TMP/metrics"
}
# The upper bound of the lag bucket holding the 99th percentile, over every probe thread.
lag_p99() {
    awk '/^watchfire_schedule_lag_seconds_bucket/ {
            match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); c[le] += $2
         }
         /^watchfire_schedule_lag_seconds_count/ {n += $2}
         END {
            split("0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.5 1 +Inf", b, " ")
            for (i = 1; i <= 13; i++) if (n > 0 && c[b[i]] >= 0.99 * n) {print "<= " b[i] " s"; exit}
            print "n/a"
         }' "$TMP/metrics"
}
if [[ "$SCRAPE" == 1 ]]; then
    read -r took bytes < <(scrape)
    echo "/metrics: $took s, $((bytes / 1048576)) MiB, $(grep -vc '^#' "$TMP/metrics") series"
    read -r a n < <(lag_counts)
    echo "lag p99 since start: $(lag_p99); lag <= 1 ms: $a of $n probes"
    echo "ticks skipped: $(awk '/^watchfire_ticks_skipped_total/ {s += $2} END {print s + 0}' "$TMP/metrics")"
fi

if [[ -n "${PERF_OUT:-}" ]]; then
    perf record -F 199 --call-graph dwarf,16384 -p "$WF" -o "$PERF_OUT" >"$TMP/perf.log" 2>&1 &
    PERF=$!
    PIDS+=("$PERF")
    sleep 1
fi
# One reload, timed: its answer, RSS before and after and the peak between, and (SCRAPE=1)
# the probes with lag <= 1 ms in the 2 s from its start.
reload_once() {
    [[ "$SCRAPE" == 1 ]] && { scrape >/dev/null; read -r a0 n0 < <(lag_counts); }
    before=$(rss "$WF")
    echo 5 >"/proc/$WF/clear_refs" # the peak RSS from here on
    t0=$(now)
    curl -fsS -X POST "http://127.0.0.1:$WF_PORT/-/reload" >/dev/null
    took=$(since "$t0")
    sleep 2 # what a reload starts after its answer (the incident feed's look at the config) is counted too
    line="reload $1: $took s, RSS $before -> $(rss "$WF") MiB, peak $(hwm "$WF") MiB"
    if [[ "$SCRAPE" == 1 ]]; then
        scrape >/dev/null
        read -r a1 n1 < <(lag_counts)
        line+=", lag <= 1 ms: $((a1 - a0)) of $((n1 - n0)) probes"
    fi
    echo "$line"
}
if [[ "$SCRAPE" == 1 ]]; then
    # The same window with no reload, for the share to compare with.
    scrape >/dev/null
    read -r a0 n0 < <(lag_counts)
    sleep 2
    scrape >/dev/null
    read -r a1 n1 < <(lag_counts)
    echo "no reload (2 s): lag <= 1 ms: $((a1 - a0)) of $((n1 - n0)) probes"
fi
for ((i = 1; i <= RELOADS; i++)); do
    reload_once "$i (unchanged)"
done
if [[ "$CHANGED" == 1 ]]; then
    # One target added: the config file's text (INLINE=1) or the set of file_sd files changed.
    if [[ "$INLINE" == 1 ]]; then
        printf '  - { name: added, url: "http://127.0.0.1:%d/added" }\n' "$NGINX_PORT" >>"$TMP/watchfire.yaml"
    else
        printf '[{"targets": ["http://127.0.0.1:%d/added"]}]\n' "$NGINX_PORT" >"$TMP/targets/added.json"
    fi
    reload_once "(one target added)"
fi
if [[ -n "${PERF_OUT:-}" ]]; then
    kill -INT "$PERF" 2>/dev/null || true
    wait "$PERF" 2>/dev/null || true
fi
grep -c "config applied" "$TMP/watchfire.log" | awk '{print "config applied " $1 " times"}'
