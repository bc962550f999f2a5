#!/usr/bin/env bash
# Runs the weir demo: builds weir and the fixture origin, starts two origins (edge-a on
# 127.0.0.1:9001, edge-b on 127.0.0.1:9002) and weir on 127.0.0.1:8080 with
# conf/weir.yaml, prints requests to try, then shows weir's log until Ctrl-C, which stops
# all three.
#
#   bash scripts/demo.sh
#
# Needs Rust (cargo) and a C compiler; installs cmake with apt-get when it is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
LISTEN_HOST=127.0.0.1
WEIR_PORT=8080
ORIGIN_PORTS=(9001 9002)
ORIGIN_NAMES=(edge-a edge-b)
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

for port in "$WEIR_PORT" "${ORIGIN_PORTS[@]}"; do
    if port_open "$port"; then
        die "port $LISTEN_HOST:$port is already in use; stop what listens there and run again"
    fi
done

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
        # weir first (graceful: it finishes requests in flight), then the origins.
        for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
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
for i in 0 1; do
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

# --- try it ------------------------------------------------------------------------------

URL="http://$LISTEN_HOST:$WEIR_PORT"
say "weir is up on $URL (pid $WEIR_PID), in front of edge-a (weight 2) and edge-b (weight 1)"
cat <<EOF

Try, in another terminal:

  curl -i $URL/hello                   # 200 from an origin, with X-Served-By: weir
  curl -s -o /dev/null -w '%{http_code} %{size_download} bytes\n' '$URL/img.jpg?size=1m'
  curl -i '$URL/hello?status=503'      # the origin's own 503, passed through
  curl -i '$URL/hello?delay=3000'      # origin answers after 3 s > read_timeout 2s: 504
  curl -s $URL/__echo                  # the request as the origin saw it (X-Forwarded-For …)
  curl -i -H 'Host: bad host' $URL/    # 400

  # smooth weighted round robin, 2:1: four of six from edge-a, two from edge-b,
  # interleaved (a b a a b a ...), never three in a row:
  for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - $URL/ | grep -i '^x-origin'; done

  # limit_req (2 r/s, burst 4): 8 requests at once: 200 at once, 4 delayed 0.5 s apart, 3 x 429
  for i in \$(seq 8); do curl -s -o /dev/null -w '%{http_code} after %{time_total}s\\n' $URL/limited/x & done; wait

  # reload: edit conf/weir.yaml (say, set X-Served-By to weir-2), check it, apply it:
  target/release/weir -t -c conf/weir.yaml && kill -HUP $WEIR_PID
  curl -sI $URL/ | grep -i x-served-by

Logs: weir $WEIR_LOG, origins $LOG_DIR/edge-a.log and edge-b.log.
weir's log follows (access log on stdout, messages on stderr). Ctrl-C stops all three.

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
