#!/usr/bin/env bash
# Tagged secrets shown by watchfire and by blackbox_exporter, side by side on one blackbox.yml
# (the module options both read): how many of the tags each shows on /config,
# /probe?debug=true and /logs?id=N, and (watchfire) on / and in its -vv log.
#
#   bash bench/secrets.sh        # a few seconds after the build
#
# Method
# - One blackbox.yml whose modules hold a unique tag (SECRET-TAG-N) in every place the
#   exporter's 0.23 options can hold a secret: header values (Authorization, Cookie,
#   X-Api-Key), the body, basic_auth's password, bearer_token, authorization's credentials,
#   proxy_url's password, oauth2's client_secret, token_url (userinfo and query) and
#   endpoint_params; each module is probed once with debug=true, with a target whose query
#   holds a tag too (token=SECRET-TAG-40).
# - Target: `watchfire sim` on a free port (no other tool needed).
# - Servers: target/debug/watchfire (`cargo build`) as `watchfire -vv run`, and Debian's
#   prometheus-blackbox-exporter (`--log.level=debug`), both on 127.0.0.1.
# - A tag counts once per server however often it appears.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

WF=target/debug/watchfire
[[ -x "$WF" ]] || cargo build --quiet
BB=$(find_tool prometheus-blackbox-exporter)
[[ -n "$BB" ]] || install_packages prometheus-blackbox-exporter
BB=$(find_tool prometheus-blackbox-exporter)

SIM=$(free_port)
"$WF" sim --listen "127.0.0.1:$SIM" >"$TMP/sim.log" 2>&1 &
PIDS+=($!)
wait_port "$SIM" "${PIDS[-1]}" "watchfire sim"

cat >"$TMP/blackbox.yml" <<EOF
modules:
  headers_body:
    prober: http
    timeout: 2s
    http:
      method: POST
      headers:
        Authorization: "Bearer SECRET-TAG-1"
        Cookie: "session=SECRET-TAG-2"
        X-Api-Key: SECRET-TAG-3
      body: '{"password": "SECRET-TAG-4"}'
      basic_auth: { username: probe, password: SECRET-TAG-5 }
  bearer:
    prober: http
    timeout: 2s
    http:
      bearer_token: SECRET-TAG-6
  authorization:
    prober: http
    timeout: 2s
    http:
      authorization: { credentials: SECRET-TAG-7 }
  proxy:
    prober: http
    timeout: 2s
    http:
      proxy_url: "http://puser:SECRET-TAG-8@127.0.0.1:$SIM"
  oauth2:
    prober: http
    timeout: 2s
    http:
      oauth2:
        client_id: probe
        client_secret: SECRET-TAG-9
        token_url: "http://tok:SECRET-TAG-10@127.0.0.1:$SIM/token?client_secret=SECRET-TAG-11"
        endpoint_params: { audience: SECRET-TAG-12 }
EOF
MODULES=(headers_body bearer authorization proxy oauth2)
TARGET="http%3A%2F%2F127.0.0.1%3A$SIM%2Fhealth%3Ftoken%3DSECRET-TAG-40"

WF_PORT=$(free_port "$SIM")
"$WF" -vv run --config "$TMP/blackbox.yml" --listen "127.0.0.1:$WF_PORT" >"$TMP/watchfire.log" 2>&1 &
PIDS+=($!)
wait_port "$WF_PORT" "${PIDS[-1]}" watchfire
BB_PORT=$(free_port "$SIM" "$WF_PORT")
"$BB" --config.file="$TMP/blackbox.yml" --web.listen-address="127.0.0.1:$BB_PORT" \
    --log.level=debug >"$TMP/exporter.log" 2>&1 &
PIDS+=($!)
wait_port "$BB_PORT" "${PIDS[-1]}" prometheus-blackbox-exporter

# Every page a server shows for the modules, into one file per server.
collect() {
    local port=$1 out=$2 m i
    for m in "${MODULES[@]}"; do
        curl -s "http://127.0.0.1:$port/probe?debug=true&module=$m&target=$TARGET" >>"$out"
    done
    curl -s "http://127.0.0.1:$port/config" >>"$out"
    curl -s "http://127.0.0.1:$port/" >>"$out"
    for i in $(seq 0 $((${#MODULES[@]} - 1))); do
        curl -s "http://127.0.0.1:$port/logs?id=$i" >>"$out"
    done
}
collect "$WF_PORT" "$TMP/wf.pages"
collect "$BB_PORT" "$TMP/bb.pages"

count() { grep -o 'SECRET-TAG-[0-9]*' "$@" 2>/dev/null | sed 's/.*://' | sort -u | wc -l; }
TOTAL=13
printf '%-34s %10s %10s\n' "" watchfire exporter
printf '%-34s %7s/%d %7s/%d\n' "tags shown on the pages" "$(count "$TMP/wf.pages")" "$TOTAL" \
    "$(count "$TMP/bb.pages")" "$TOTAL"
printf '%-34s %7s/%d %7s/%d\n' "tags in the log (-vv / debug)" "$(count "$TMP/watchfire.log")" \
    "$TOTAL" "$(count "$TMP/exporter.log")" "$TOTAL"
echo "exporter pages show: $(grep -o 'SECRET-TAG-[0-9]*' "$TMP/bb.pages" | sort -u | tr '\n' ' ')"
echo "watchfire pages: $(grep -c 'probe_success' "$TMP/wf.pages") probe answers, $(grep -o '<secret>' "$TMP/wf.pages" | wc -l) <secret> marks"
