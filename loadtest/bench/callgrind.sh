#!/usr/bin/env bash
# Noise-free cost per request: weir (1 thread) under callgrind or strace answering a fixed
# number of keep-alive requests; prints instructions (or syscalls) per request.
#
#   bash loadtest/bench/callgrind.sh                         # pass-1k, 2,000 requests, callgrind
#   SCENARIO=hit-50k MEMORY=0 bash loadtest/bench/callgrind.sh   # disk HIT, memory tier off
#   TOOL=strace SCENARIO=hit-50k MEMORY=0 bash loadtest/bench/callgrind.sh
#
# Knobs: SCENARIO (pass-SIZE or hit-SIZE), N (requests, 2000), CONNS (client connections, 4),
# MEMORY (hit-*: the zone's `memory`, default as in scenarios/cache.yaml), TOOL (callgrind or
# strace), WEIR (binary, target/release/weir), OUT_DIR (default: a temp dir, kept).
# Counting starts after the warm-up (callgrind_control -z / strace attached late), so start-up
# and the first MISS are left out; the count covers every thread of the process.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCENARIO=${SCENARIO:-pass-1k}
N=${N:-2000}
CONNS=${CONNS:-4}
TOOL=${TOOL:-callgrind}
WEIR=${WEIR:-$ROOT/target/release/weir}
ORIGIN_BIN=${ORIGIN_BIN:-$ROOT/target/release/weir-origin}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/weir-callgrind.XXXXXX")}
mkdir -p "$OUT_DIR"

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 600); do [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1") == 200 ]] && return 0; sleep 0.2; done; return 1; }

OPORT=$(free_port)
"$ORIGIN_BIN" --listen "127.0.0.1:$OPORT" --name origin --threads 1 >/dev/null &
PIDS+=($!)
wait_http "http://127.0.0.1:$OPORT/__health"

case $SCENARIO in
    pass-*) conf=passthrough path=/bench ;;
    hit-*) conf=cache path=/hit ;;
    *) echo "callgrind.sh: SCENARIO must be pass-SIZE or hit-SIZE" >&2; exit 2 ;;
esac
PORT=$(free_port)
sed -e "s|@LISTEN@|127.0.0.1:$PORT|" -e "s|@WORKERS@|1|" -e "s|@ORIGIN@|127.0.0.1:$OPORT|" \
    -e "s|@RUN_DIR@|$OUT_DIR|g" "$ROOT/loadtest/scenarios/$conf.yaml" >"$OUT_DIR/weir.yaml"
[[ -n ${MEMORY:-} ]] && sed -i -e "s|^\(    memory:\) [^ ]*|\1 $MEMORY|" "$OUT_DIR/weir.yaml"
if [[ $TOOL == callgrind ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$OUT_DIR/callgrind.out.%p" \
        "$WEIR" -c "$OUT_DIR/weir.yaml" >"$OUT_DIR/weir.log" 2>&1 &
else
    "$WEIR" -c "$OUT_DIR/weir.yaml" >"$OUT_DIR/weir.log" 2>&1 &
fi
WEIR_PID=$!
PIDS+=("$WEIR_PID")
wait_http "http://127.0.0.1:$PORT/__health"

size=${SCENARIO##*-}
url_path="$path?size=$size"
client() { # $1 = requests; prints "ok N" or fails
    python3 - "$PORT" "$url_path" "$1" "$CONNS" "$SCENARIO" <<'PY'
import http.client, sys, threading
port, path, n, conns, scenario = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
bad = []
def run(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(k):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        if r.status != 200 or (scenario.startswith("hit-") and r.getheader("X-Cache-Status") != "HIT"):
            bad.append((r.status, r.getheader("X-Cache-Status")))
ts = [threading.Thread(target=run, args=(n // conns + (1 if i < n % conns else 0),)) for i in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad:
    sys.exit(f"bad responses: {len(bad)}, first {bad[0]}")
print(f"ok {n}")
PY
}
# Warm-up: the first MISS fills the cache, then a few HITs on every connection.
curl -s -o /dev/null "http://127.0.0.1:$PORT$url_path"
sleep 0.5
client $((CONNS * 5)) >/dev/null
if [[ $TOOL == callgrind ]]; then
    callgrind_control -z "$WEIR_PID" >/dev/null
    client "$N"
    callgrind_control -d "$WEIR_PID" >/dev/null
    sleep 1
    dump=$(ls -t "$OUT_DIR"/callgrind.out.* | head -1)
    total=$(grep -E '^(summary|totals):' "$dump" | head -1 | awk '{print $2}')
    echo "$SCENARIO ${MEMORY:+memory=$MEMORY }instructions: $total over $N requests = $((total / N)) per request ($dump)"
else
    strace -c -f -o "$OUT_DIR/strace.txt" -p "$WEIR_PID" &
    STRACE_PID=$!
    sleep 1
    client "$N"
    kill -INT "$STRACE_PID"; wait "$STRACE_PID" 2>/dev/null || true
    calls=$(awk '$NF=="total" {print $4}' "$OUT_DIR/strace.txt")
    echo "$SCENARIO ${MEMORY:+memory=$MEMORY }syscalls: $calls over $N requests ($OUT_DIR/strace.txt)"
    python3 -c "print('per request: %.2f' % ($calls / $N))"
    cat "$OUT_DIR/strace.txt"
fi
