#!/usr/bin/env bash
# What a frozen primary costs requests through the failover proxy, what slow flapping costs in
# switches, and what running out of file descriptors costs healthy targets (issue 12, items 6
# and 8). About a minute after the first compile.
#
#   bash bench/frozen_primary.sh            # 3 runs of each measurement
#   BENCH_RUNS=1 bash bench/frozen_primary.sh
#
# Method
# - The measurements are the integration tests that assert them, built in release and run with
#   their figures printed (one test at a time, each bounded: ~2 s, ~8 s and ~1 s):
#   - tests/failover_freeze.rs `requests_inside_a_frozen_primary_end_right_after_the_switch`:
#     two `watchfire sim` child processes behind one failover group (checks every 100 ms,
#     timeout 80 ms, down_after 3, proxy timeout 30 s); 4 clients send GETs one after another on
#     fresh connections through the proxy and 2 POSTs are sent, then the primary gets SIGSTOP
#     (it keeps accepting, never answers). Reported: time from SIGSTOP to the switch, and the
#     latency distribution (p50, p99, max) of every GET sent in the 1.5 s after the freeze. The
#     goal: max ≤ the switch time + 300 ms (before this change: requests inside the frozen
#     primary waited for the 30 s proxy timeout and got 504).
#   - `a_slowly_flapping_primary_is_dampened`: an in-process sim that refuses connections for
#     150 ms every 600 ms, six times, checks every 25 ms, hold 150 ms; switches counted with
#     `dampening: { window: 0s }` (off) and with `{ window: 1m, max_hold: 10s }`.
#   - tests/fd_limit.rs: 50 healthy targets probed every 100 ms in-process while every file
#     descriptor the process may open is taken; probes failed with reason `prober`, targets
#     marked down (goal 0).
# - Everything talks to 127.0.0.1 only; every process started is stopped by the tests
#   themselves. The machine may be shared: the 1-minute load average is printed with the figures.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${BENCH_RUNS:-3}

printf '== building the tests (release)\n' >&2
cargo test --release --test failover_freeze --test fd_limit --no-run 2>&1 | tail -1 >&2

for k in $(seq 1 "$RUNS"); do
    printf '== run %s of %s (load %s)\n' "$k" "$RUNS" "$(cut -d' ' -f1 /proc/loadavg)" >&2
    cargo test --release --test failover_freeze -- --nocapture --test-threads 1 2>/dev/null \
        | grep -oE '(frozen primary|primary failing).*'
    cargo test --release --test fd_limit -- --nocapture 2>/dev/null | grep -oE 'fd exhaustion.*'
done
