#!/usr/bin/env bash
# The server under abuse: watchfire beside blackbox_exporter, same config, same clients.
#
#   bash bench/abuse.sh                   # about 1 minute after the build
#   BENCH_SOCKETS=1000 bash bench/abuse.sh
#   WATCHFIRE_BIN=path/to/watchfire bash bench/abuse.sh   # a binary already built (release)
#
# Method
# - Everything runs on this machine and talks to 127.0.0.1 only; every server and client is
#   stopped on exit (trap). Clients: bench/abuse.py (Python asyncio).
# - Both servers read the same blackbox.yml (`http_2xx`: prober http, timeout 30s) and listen on
#   a free loopback port: `watchfire run` (release build, default limits) and Debian's
#   `prometheus-blackbox-exporter` (0.23).
# - Slow sockets: BENCH_SOCKETS (3,000) sockets each send half a request header, then one byte
#   every 5 s, and reconnect when the server closes them. After 3 s, for 12 s, `/-/healthy` and
#   `/metrics` are asked in turn on fresh connections, 0.25 s apart; an answer counts when it is
#   200 within 1 s. Goal: 100 %.
# - Probe flood: 1,500 concurrent `/probe` of a target that accepts and never answers, each with
#   `X-Prometheus-Scrape-Timeout-Seconds: 5.5` (deadline 5 s after the 0.5 s offset). Reported:
#   answers' times (from the request's last byte sent to the answer's end, as Prometheus times
#   a scrape), how many came after the deadline + 100 ms,
#   how many were 503 and how fast, and 10 `/metrics` scrapes during the flood (200 within 1 s).
#   Ten more `/probe`s from curl (`%{time_total}`, connect included), half a second into the
#   flood, time it with a client that is not the flood's own.
#   Goal: every answer by its deadline + 100 ms or a prompt 503; `/metrics` always answered.
# - The machine may be shared: figures move with other load. Both servers run the same clients
#   one after the other in the same minute.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SOCKETS=${BENCH_SOCKETS:-3000}
PROBES=${BENCH_PROBES:-1500}

# shellcheck source=bench/lib.sh
source bench/lib.sh

EXPORTER=$(find_tool prometheus-blackbox-exporter)
if [[ -z "$EXPORTER" ]]; then
    install_packages prometheus-blackbox-exporter
    EXPORTER=$(find_tool prometheus-blackbox-exporter)
fi
command -v python3 >/dev/null || install_packages python3
command -v curl >/dev/null || install_packages curl

bench_tmp abuse
release_binary
raise_open_files

cat >"$TMP/blackbox.yml" <<'EOF'
modules:
  http_2xx:
    prober: http
    timeout: 30s
EOF

start() { # NAME PORT -> pid in LAST_PID
    local name=$1 port=$2
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
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_port "$port" "$LAST_PID" "$name"
}

HANG_PORT=$(free_port)
python3 bench/abuse.py hang "$HANG_PORT" &
PIDS+=("$!")
wait_port "$HANG_PORT" "$!" "the hanging target"

for name in watchfire exporter; do
    port=$(free_port "$HANG_PORT")
    start "$name" "$port"
    pid=$LAST_PID
    log "$name: $SOCKETS slow sockets, /-/healthy and /metrics for 12 s"
    printf '%s slowloris %s\n' "$name" "$(python3 bench/abuse.py slowloris "$port" "$SOCKETS" 12)"
    log "$name: $PROBES concurrent /probe to a hanging target, deadline 5 s"
    python3 bench/abuse.py flood "$port" "$HANG_PORT" "$PROBES" 5 >"$TMP/flood.json" &
    flood=$!
    # Ten more probes from curl, half a second into the flood: timed by a client that is not
    # the flood's own (the Python client's event loop runs late under 1,500 answers at once).
    sleep 0.5
    curls=()
    for i in $(seq 10); do
        curl -s -o /dev/null -w '%{http_code}:%{time_total} ' --max-time 30 \
            -H 'X-Prometheus-Scrape-Timeout-Seconds: 5.5' \
            "http://127.0.0.1:$port/probe?module=http_2xx&target=http://127.0.0.1:$HANG_PORT/" \
            >"$TMP/curl.$i.txt" &
        curls+=("$!")
    done
    wait "$flood" "${curls[@]}"
    printf '%s flood %s\n' "$name" "$(cat "$TMP/flood.json")"
    printf '%s flood, curl (status:seconds) %s\n' "$name" "$(cat "$TMP"/curl.*.txt)"
    rm -f "$TMP"/curl.*.txt
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
