#!/usr/bin/env bash
# Runs the weir demo: builds weir and the fixture origin, starts three origins (edge-a on
# 127.0.0.1:9001 and edge-b on 127.0.0.1:9002 in the `edge` tier, backup on 127.0.0.1:9003
# in the `backup` tier) and weir on 127.0.0.1:8080 with conf/weir.yaml (a disk cache in
# /tmp/weir-demo/cache, emptied at start; the admin API on 127.0.0.1:9901, token demo-token),
# prints the dashboard's URL (http://127.0.0.1:9901/) and requests to try, then shows weir's log until Ctrl-C, which stops all four. The edge
# tier also lists 127.0.0.1:9004, where nothing listens, so the log shows a server going down.
#
#   bash scripts/demo.sh
#
# Needs Rust (cargo) and a C compiler; installs cmake with apt-get when it is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
LISTEN_HOST=127.0.0.1
WEIR_PORT=8080
# conf/weir.yaml's admin listener and token.
ADMIN_PORT=9901
ADMIN_TOKEN=demo-token
ORIGIN_PORTS=(9001 9002 9003)
ORIGIN_NAMES=(edge-a edge-b backup)
# In conf/weir.yaml's edge tier, with nothing listening: the demo's dead server.
DEAD_PORT=9004
LOG_DIR="$ROOT/target/demo"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------

command -v cargo >/dev/null || die "cargo not found; install Rust from https://rustup.rs"
if ! command -v cmake >/dev/null; then
    say "installing cmake (needed to build zlib-ng for Pingora)"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update && apt-get install -y cmake
    else
        sudo apt-get update && sudo apt-get install -y cmake
    fi
fi

# --- ports -------------------------------------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:$1 (bash's /dev/tcp, no curl).
port_open() { (exec 3<>"/dev/tcp/$LISTEN_HOST/$1") 2>/dev/null; }

for port in "$WEIR_PORT" "$ADMIN_PORT" "${ORIGIN_PORTS[@]}"; do
    if port_open "$port"; then
        die "port $LISTEN_HOST:$port is already in use; stop what listens there and run again"
    fi
done
if port_open "$DEAD_PORT"; then
    die "port $LISTEN_HOST:$DEAD_PORT is in use, but the demo needs nothing there (it is the edge server that is down); stop what listens there and run again"
fi

# --- build -------------------------------------------------------------------------------

say "building weir and weir-origin (release; the first build takes a few minutes)"
cargo build --release -p weir -p weir-origin

# --- start -------------------------------------------------------------------------------

mkdir -p "$LOG_DIR"
PIDS=()
TAIL_PID=""

stop_all() {
    trap - INT TERM EXIT
    [ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null || true
    if [ "${#PIDS[@]}" -gt 0 ]; then
        echo
        echo "demo: stopping weir and the origins"
        # weir first (graceful: it finishes requests in flight), then the origins. CONT wakes
        # an origin frozen with kill -STOP (the failover example), so it can stop.
        for pid in "${PIDS[@]}"; do
            kill -TERM "$pid" 2>/dev/null || true
            kill -CONT "$pid" 2>/dev/null || true
        done
        for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    fi
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# Waits up to 10 s until file $1 contains $2, or fails naming process $3.
wait_for_line() {
    for _ in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || { cat "$1" >&2; die "process $3 exited; log above ($1)"; }
        sleep 0.1
    done
    cat "$1" >&2
    die "timed out waiting for '$2' in $1"
}

ORIGIN_PIDS=()
for i in "${!ORIGIN_PORTS[@]}"; do
    log="$LOG_DIR/${ORIGIN_NAMES[$i]}.log"
    target/release/weir-origin --listen "$LISTEN_HOST:${ORIGIN_PORTS[$i]}" \
        --name "${ORIGIN_NAMES[$i]}" >"$log" 2>&1 &
    ORIGIN_PIDS+=("$!")
    wait_for_line "$log" "listening on" "$!"
    echo "origin ${ORIGIN_NAMES[$i]} listening on $LISTEN_HOST:${ORIGIN_PORTS[$i]} (pid $!)"
done

say "checking conf/weir.yaml"
target/release/weir -t -c conf/weir.yaml

WEIR_LOG="$LOG_DIR/weir.log"
target/release/weir -c conf/weir.yaml >"$WEIR_LOG" 2>&1 &
WEIR_PID=$!
# Stop order: weir, then the origins.
PIDS=("$WEIR_PID" "${ORIGIN_PIDS[@]}")

# Ready when weir answers an HTTP request (through to an origin's /__health).
weir_answers() {
    (
        exec 3<>"/dev/tcp/$LISTEN_HOST/$WEIR_PORT" || exit 1
        printf 'GET /__health HTTP/1.0\r\nHost: %s\r\n\r\n' "$LISTEN_HOST" >&3
        IFS= read -r status <&3 && [[ "$status" == HTTP/1.?" 200"* ]]
    ) 2>/dev/null
}
ready=no
for _ in $(seq 100); do
    if weir_answers; then ready=yes; break; fi
    kill -0 "$WEIR_PID" 2>/dev/null || { cat "$WEIR_LOG" >&2; die "weir exited; log above"; }
    sleep 0.1
done
[ "$ready" = yes ] || { cat "$WEIR_LOG" >&2; die "weir does not answer on $LISTEN_HOST:$WEIR_PORT"; }

# Empties the demo's cache zone through the admin API (objects of an earlier run would make
# the first request a HIT): POST /caches/demo/clean?older_than=0s, with the token.
empty_cache() {
    (
        exec 3<>"/dev/tcp/$LISTEN_HOST/$ADMIN_PORT" || exit 1
        printf 'POST /caches/demo/clean?older_than=0s HTTP/1.0\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\n\r\n' \
            "$LISTEN_HOST" "$ADMIN_TOKEN" >&3
        IFS= read -r status <&3 && [[ "$status" == HTTP/1.?" 200"* ]]
    ) 2>/dev/null
}
empty_cache || echo "demo: could not empty the cache zone through the admin API (see $WEIR_LOG)" >&2

# --- try it ------------------------------------------------------------------------------

URL="http://$LISTEN_HOST:$WEIR_PORT"
ADMIN="http://$LISTEN_HOST:$ADMIN_PORT"
AUTH="Authorization: Bearer $ADMIN_TOKEN"
EDGE_A_PID=${ORIGIN_PIDS[0]}
EDGE_B_PID=${ORIGIN_PIDS[1]}
say "weir is up on $URL (pid $WEIR_PID), admin API on $ADMIN: tier edge = edge-a (weight 2), edge-b (weight 1) and $LISTEN_HOST:$DEAD_PORT (nothing there); tier backup = backup"
say "dashboard: open $ADMIN/ in a browser (actions: type the token $ADMIN_TOKEN into the page)"
cat <<EOF

Try, in another terminal:

  curl -i $URL/hello                   # 200 from an edge origin, with X-Served-By: weir
  curl -s -o /dev/null -w '%{http_code} %{size_download} bytes\n' '$URL/img.jpg?size=1m'
  curl -s $URL/__echo                  # the request as the origin saw it (X-Forwarded-For …)
  curl -i -H 'Host: bad host' $URL/    # 400

  # smooth weighted round robin over the usable edge servers, 2:1: four of six from
  # edge-a, two from edge-b, interleaved (a b a a b a ...); $LISTEN_HOST:$DEAD_PORT is down:
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - $URL/ | grep -i '^x-origin'; done
  grep 'upstream demo' $WEIR_LOG       # why: "... $LISTEN_HOST:$DEAD_PORT (edge) down: 2 failed checks (connection refused)"

  # the disk cache (/cached/..., zone demo in /tmp/weir-demo/cache; the origins send no
  # Cache-Control, so valid: 200 for 1m decides): MISS, then HIT from the stored copy
  curl -s -o /dev/null -D - '$URL/cached/a.jpg?size=100k' | grep -i '^x-cache-status\|^x-origin'   # MISS
  curl -s -o /dev/null -D - '$URL/cached/a.jpg?size=100k' | grep -i '^x-cache-status\|^x-origin'   # HIT, same x-origin
  curl -s -o /dev/null -D - -H 'Range: bytes=0-99' '$URL/cached/a.jpg?size=100k' | grep -i '^HTTP\|^x-cache-status\|^content-range'   # 206 HIT
  curl -s -o /dev/null -D - -H 'X-No-Cache: 1' '$URL/cached/a.jpg?size=100k' | grep -i '^x-cache-status'   # BYPASS (and stored again)
  curl -s -o /dev/null -D - '$URL/cached/b.jpg?cc=no-store' | grep -i '^x-cache-status'   # MISS, every time
  grep 'not storing' $WEIR_LOG         # why: "cache demo: not storing /cached/b.jpg?cc=no-store: Cache-Control: no-store"
  ls /tmp/weir-demo/cache              # the objects: <2 hex>/<32 hex>, one file each

  # the admin API ($ADMIN; GET needs no token, everything else "$AUTH");
  # $ADMIN/ in a browser is the dashboard (token: $ADMIN_TOKEN)
  curl -s $ADMIN/status                # version, uptime, requests, cache zone (objects, hit_ratio), servers
  curl -s $ADMIN/metrics | grep -E '^weir_(cache_requests|requests)_total'
  curl -s $ADMIN/traffic               # today's totals (kept in /tmp/weir-demo/state/state.json)
  curl -s -X POST -H '$AUTH' -d '{"zone": "demo", "url": "$URL/cached/a.jpg?size=100k"}' $ADMIN/purge   # {"purged":1}: the next GET is a MISS
  curl -s -X POST $ADMIN/reload        # 401: no token
  curl -s -X POST -H '$AUTH' $ADMIN/reload   # {"ok":true}, as kill -HUP
  # register backup in the edge tier for 20 minutes (an edge node's heartbeat), then remove it
  curl -s -X POST -H '$AUTH' -d '{"tier": "edge", "addr": "$LISTEN_HOST:9003", "ttl": "20m"}' $ADMIN/upstreams/demo/servers
  curl -s $ADMIN/upstreams/demo        # every server with its state; $LISTEN_HOST:9003 twice (edge, registered; backup)
  curl -s -o /dev/null -w '%{http_code}\n' -X DELETE -H '$AUTH' $ADMIN/upstreams/demo/servers/$LISTEN_HOST:9003   # 204

  # redirect mode: /jump/ answers 302 to a usable server instead of proxying
  curl -si $URL/jump/hello | grep -i '^HTTP\|^location'   # Location: http://$LISTEN_HOST:9001/jump/hello (or :9002)
  curl -sL $URL/jump/hello             # followed: the origin answers directly

  # statuses: 500 is not in next_upstream, so the origin's own 500 comes back at once;
  # 502 is: the request moves to the next server, up to 3 (next_upstream_tries), and the
  # client gets the last one's own 502. A POST is not sent to a second server.
  curl -si '$URL/hello?status=500' | grep -i '^HTTP\|^x-origin'   # 500 from edge-a or edge-b
  curl -si -X POST -d x '$URL/hello?status=502' | grep -i '^HTTP\|^x-origin'   # 502 from edge-a or edge-b
  curl -si '$URL/hello?status=502' | grep -i '^HTTP\|^x-origin'   # 502 from backup, after edge-a and edge-b
  # slower than read_timeout (3 s > 2s): three servers time out in turn, then 504 after ~6 s
  curl -s -o /dev/null -w '%{http_code} after %{time_total}s\n' '$URL/hello?delay=3000'
  # every failure above counted toward max_fails (2 within 10s); the log names each server
  # taken down and why, e.g. "upstream demo: $LISTEN_HOST:9003 (backup) down for 10s:
  # 2 failure(s) within 10s (read timed out)". While every server is down weir still
  # tries them, in tier order (nginx would answer 502 at once).

  # failover to the backup tier. First wait 10 s (fail_timeout) so the servers taken down
  # above are tried again. Then freeze both edge origins (they accept connections but never
  # answer): the first request waits read_timeout (2s) on each and backup answers; the
  # health checks take edge-a and edge-b down, and later requests go straight to backup.
  kill -STOP $EDGE_A_PID $EDGE_B_PID
  for i in 1 2 3; do curl -s -o /dev/null -D - $URL/ | grep -i '^x-origin'; done   # backup (the first after ~4 s)
  # wake them up: "... up after 2 good checks" in the log a few seconds later, and once
  # fail_timeout has passed "... up: a request succeeded after fail_timeout"; edge serves again
  kill -CONT $EDGE_A_PID $EDGE_B_PID

  # limit_req (2 r/s, burst 4): 8 requests at once: 200 at once, 4 delayed 0.5 s apart, 3 x 429
  for i in \$(seq 8); do curl -s -o /dev/null -w '%{http_code} after %{time_total}s\\n' $URL/limited/x & done; wait

  # reload: edit conf/weir.yaml (say, set X-Served-By to weir-2), check it, apply it:
  target/release/weir -t -c conf/weir.yaml && kill -HUP $WEIR_PID
  curl -sI $URL/ | grep -i x-served-by

Logs: weir $WEIR_LOG, origins $LOG_DIR/edge-a.log, edge-b.log and backup.log.
weir's log follows (access log on stdout, messages on stderr). Ctrl-C stops all four.

EOF
if ! command -v curl >/dev/null; then
    echo "(curl is not installed here: apt-get install -y curl)"
fi

tail -n +1 -f "$WEIR_LOG" &
TAIL_PID=$!

# Foreground until weir stops: Ctrl-C reaches weir too (it stops gracefully), or it exits on
# its own. The EXIT trap then stops the origins.
status=0
wait "$WEIR_PID" || status=$?
PIDS=("${ORIGIN_PIDS[@]}")
echo "demo: weir stopped (exit status $status)"
exit "$status"
