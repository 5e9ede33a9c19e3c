#!/usr/bin/env bash
# /probe throughput: watchfire against the real blackbox_exporter, same target, same load.
#
#   bash bench/blackbox.sh                 # 3 runs of 5 s per server: ~1 minute after the build
#   BENCH_QUICK=1 bash bench/blackbox.sh   # 3 runs of 2 s
#
# Method
# - Everything runs on this machine and talks to 127.0.0.1 only; nginx and both servers are
#   stopped on exit (trap).
# - Target: nginx (bench/nginx.conf: 1 worker, `200 ok\n`, no access log) on a free port.
# - Both servers read the same blackbox.yml: `http_2xx` (prober http, timeout 5s).
#   - watchfire: benches/blackbox_probe.rs in `--serve` mode (watchfire's own server and
#     runtime, one tokio worker per CPU, as `watchfire run`), built with `cargo bench --no-run`
#     and run from a private copy.
#   - blackbox_exporter: Debian's `prometheus-blackbox-exporter` (Go; GOMAXPROCS = CPUs).
# - Load: `wrk -t1 -c32 -d5s 'http://127.0.0.1:PORT/probe?target=http://127.0.0.1:NGINX/&module=http_2xx'`:
#   32 scrapes in flight on kept-alive connections, each scrape one probe, and each probe a fresh
#   connection to nginx (both probers send `Connection: close`, as blackbox does). Three runs per
#   server, alternating watchfire / exporter, medians reported.
# - Per run: probes/s = wrk's requests/s (all must be 200; a run with socket errors or non-2xx
#   answers is reported); CPU µs per probe = delta of utime+stime of the server process from
#   /proc/PID/stat (clock ticks / CLK_TCK) over the run / requests. nginx's and wrk's CPU are not
#   counted for either.
# - Before measuring, one probe through each server must report probe_success 1.
# - Goal: watchfire >= 5x the exporter's probes/s. The machine may be shared: figures move with
#   other load; both servers are measured in the same run so the ratio is fair.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=${BENCH_QUICK:-0}
SECS=5
[[ "$QUICK" == 1 ]] && SECS=2

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

bench_tmp blackbox-bench
start_nginx

cat >"$TMP/blackbox.yml" <<'EOF'
modules:
  http_2xx:
    prober: http
    timeout: 5s
EOF

# watchfire (the bench binary's serve mode).
log "building (cargo bench --bench blackbox_probe --no-run)"
BIN_SRC=$(cargo bench --bench blackbox_probe --no-run --message-format=json-render-diagnostics |
    grep -o '"executable":"[^"]*blackbox_probe[^"]*"' | tail -1 | cut -d'"' -f4)
[[ -x "$BIN_SRC" ]] || { log "cannot find the benchmark executable"; exit 1; }
BIN="$TMP/blackbox_probe"
cp "$BIN_SRC" "$BIN"
WF_PORT=$(free_port)
mkfifo "$TMP/wf.stdin"
"$BIN" --serve "127.0.0.1:$WF_PORT" --config "$TMP/blackbox.yml" <"$TMP/wf.stdin" >"$TMP/wf.log" 2>&1 &
WF_PID=$!
PIDS+=("$WF_PID")
exec 4>"$TMP/wf.stdin" # holds watchfire's stdin open; closing it stops watchfire
wait_port "$WF_PORT" "$WF_PID" watchfire

# The real exporter.
BB_PORT=$(free_port)
"$EXPORTER" --config.file="$TMP/blackbox.yml" --web.listen-address="127.0.0.1:$BB_PORT" >"$TMP/bb.log" 2>&1 &
BB_PID=$!
PIDS+=("$BB_PID")
wait_port "$BB_PORT" "$BB_PID" blackbox_exporter
BB_VERSION=$("$EXPORTER" --version 2>&1 | head -1)

QUERY="/probe?target=$TARGET&module=http_2xx"
for pair in "watchfire:$WF_PORT" "exporter:$BB_PORT"; do
    name=${pair%%:*}
    port=${pair##*:}
    ok=$(curl -s "http://127.0.0.1:$port$QUERY" | awk '$1 == "probe_success" {print $2}')
    [[ "$ok" == 1 ]] || { log "$name: probe_success is '$ok', not 1"; exit 1; }
done
log "nginx on $TARGET, watchfire $WF_PID on :$WF_PORT, exporter $BB_PID on :$BB_PORT ($BB_VERSION)"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A RATES CPUS NOTES
run() {
    local name=$1 port=$2 pid=$3 i=$4
    local t0 t1 out rate requests cpu errors
    t0=$(ticks "$pid")
    out=$("$WRK" -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$port$QUERY")
    t1=$(ticks "$pid")
    rate=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    cpu=$(awk -v d="$((t1 - t0))" -v hz="$HZ" -v n="$requests" 'BEGIN {printf "%.1f", (n > 0 ? d / hz * 1e6 / n : 0)}')
    errors=$(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr -s ' ' || true)
    log "$name run $i: $rate probes/s, $cpu CPU us/probe${errors:+ ($errors)}"
    RATES[$name]+="$rate "
    CPUS[$name]+="$cpu "
    [[ -n "$errors" ]] && NOTES[$name]+="run $i: $errors; "
    return 0
}

for i in 1 2 3; do
    run watchfire "$WF_PORT" "$WF_PID" "$i"
    run exporter "$BB_PORT" "$BB_PID" "$i"
done

# Probes still succeed after the load.
for pair in "watchfire:$WF_PORT" "exporter:$BB_PORT"; do
    name=${pair%%:*}
    port=${pair##*:}
    ok=$(curl -s "http://127.0.0.1:$port$QUERY" | awk '$1 == "probe_success" {print $2}')
    [[ "$ok" == 1 ]] || NOTES[$name]+="probe_success $ok after the load; "
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
WF_RATE=$(med "${RATES[watchfire]}")
BB_RATE=$(med "${RATES[exporter]}")
WF_CPU=$(med "${CPUS[watchfire]}")
BB_CPU=$(med "${CPUS[exporter]}")
RATIO=$(awk -v a="$WF_RATE" -v b="$BB_RATE" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}')
CPU_RATIO=$(awk -v a="$BB_CPU" -v b="$WF_CPU" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}')
VERDICT=$(awk -v r="$RATIO" 'BEGIN {print (r >= 5 ? "PASS" : "MISS")}')

echo
echo "/probe benchmark: $(nproc) CPUs; nginx 1 worker on $TARGET; wrk -t1 -c32 -d${SECS}s; module http_2xx"
echo "exporter: $BB_VERSION"
echo
FMT='%-20s %-24s %12s %-24s %14s\n'
# shellcheck disable=SC2059
printf "$FMT" server "probes/s (3 runs)" "median" "CPU us/probe (3 runs)" "median"
# shellcheck disable=SC2059
printf "$FMT" watchfire "${RATES[watchfire]}" "$WF_RATE" "${CPUS[watchfire]}" "$WF_CPU"
# shellcheck disable=SC2059
printf "$FMT" blackbox_exporter "${RATES[exporter]}" "$BB_RATE" "${CPUS[exporter]}" "$BB_CPU"
echo
echo "watchfire / exporter: ${RATIO}x the probes/s, ${CPU_RATIO}x less CPU per probe"
echo "goal: >= 5x the exporter's probes/s: $VERDICT"
for n in watchfire exporter; do
    [[ -n "${NOTES[$n]:-}" ]] && echo "note ($n): ${NOTES[$n]}"
done
exit 0
