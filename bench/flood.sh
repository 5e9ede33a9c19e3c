#!/usr/bin/env bash
# 1,500 concurrent /probe requests to a target that never answers: watchfire beside
# blackbox_exporter, same config, same client, one after the other in the same minute.
#
#   bash bench/flood.sh                                   # about 30 s after the builds
#   BENCH_PROBES=500 bash bench/flood.sh
#   WATCHFIRE_BIN=target/release/watchfire bash bench/flood.sh   # a release binary already built
#
# Method
# - Loopback only; every server and client is stopped on exit (trap).
# - Target: `bench/abuse.py hang` (accepts every connection, never answers).
# - Both servers read the same blackbox.yml (`http_2xx`: prober http, timeout 30s) and listen on
#   a free loopback port: `watchfire run` (release build, default limits) and Debian's
#   `prometheus-blackbox-exporter` (0.23).
# - Client: benches/flood.rs (Rust, tokio + hyper, one connection per request, its own
#   runtime doing nothing else). All BENCH_PROBES requests start at once, each with
#   `X-Prometheus-Scrape-Timeout-Seconds: 5.5`, so the deadline is 5 s after the 0.5 s offset.
#   Each answer is timed from the request handed to its connection to its response head.
#   Reported: 200s, 503s (and the slowest), no answers; p50/p99/max of (answer time − 5 s)
#   in ms; how many came after deadline + 100 ms; 20 `/metrics` scrapes on fresh connections
#   during the flood (200 within 1 s).
#   Goal: every answer by its deadline + 100 ms or a prompt 503; `/metrics` always answered.
# - The machine may be shared with other builds: figures move with other load.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROBES=${BENCH_PROBES:-1500}

# shellcheck source=bench/lib.sh
source bench/lib.sh

EXPORTER=$(find_tool prometheus-blackbox-exporter)
if [[ -z "$EXPORTER" ]]; then
    install_packages prometheus-blackbox-exporter
    EXPORTER=$(find_tool prometheus-blackbox-exporter)
fi
command -v python3 >/dev/null || install_packages python3

bench_tmp flood
release_binary
log "building the flood client"
FLOOD=$(cargo build --profile dev --bench flood --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*flood[^"]*"' | tail -1 | cut -d'"' -f4)
[[ -x "$FLOOD" ]] || { log "the flood client did not build"; exit 1; }
raise_open_files

cat >"$TMP/blackbox.yml" <<'YAML'
modules:
  http_2xx:
    prober: http
    timeout: 30s
YAML

HANG_PORT=$(free_port)
python3 bench/abuse.py hang "$HANG_PORT" &
PIDS+=("$!")
wait_port "$HANG_PORT" "$!" "the hanging target"

for name in watchfire exporter; do
    port=$(free_port "$HANG_PORT")
    case "$name" in
        watchfire)
            "$BIN" run --config "$TMP/blackbox.yml" \
                --web.listen-address "127.0.0.1:$port" >"$TMP/watchfire.log" 2>&1 &
            ;;
        exporter)
            "$EXPORTER" --config.file "$TMP/blackbox.yml" \
                --web.listen-address "127.0.0.1:$port" >"$TMP/exporter.log" 2>&1 &
            ;;
    esac
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$pid" "$name"
    log "$name: $PROBES concurrent /probe to a hanging target, deadline 5 s"
    printf '%s flood %s\n' "$name" "$("$FLOOD" --addr "127.0.0.1:$port" \
        --target "http://127.0.0.1:$HANG_PORT/" --probes "$PROBES" --deadline-s 5)"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
