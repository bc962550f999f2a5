#!/usr/bin/env bash
# Profile weir under one scenario of run.sh with `perf record` (software cpu-clock event, DWARF
# call graphs; works in VMs without hardware counters) and print the top costs.
#
#   bash loadtest/bench/profile.sh                       # pass-1k, 1 worker, 10 s
#   SCENARIO=hit-50k SECONDS_=10 WORKERS=1 bash loadtest/bench/profile.sh
#   SCENARIO=idle-2000 bash loadtest/bench/profile.sh    # page faults while 2,000 idle clients connect
#
# Knobs: SCENARIO (pass-SIZE, hit-SIZE, newconn-SIZE, idle-N), WORKERS (weir threads, 1),
# SECONDS_ (perf record time, 10), CONNECTIONS (32), BUILD (0: use target/release),
# OUT_DIR (default: a temp dir, kept; perf.data, report.txt). Needs `perf` (linux-perf);
# the release profile keeps debug info, so symbols and inlined frames resolve.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SCENARIO=${SCENARIO:-pass-1k}
WORKERS=${WORKERS:-1}
SECS=${SECONDS_:-10}
CONNECTIONS=${CONNECTIONS:-32}
BUILD=${BUILD:-0}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/weir-profile.XXXXXX")}
mkdir -p "$OUT_DIR"
command -v perf >/dev/null || { echo "profile.sh: perf is missing (apt-get install linux-perf)" >&2; exit 2; }
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p weir -p weir-origin)
cp "$ROOT/target/release/weir" "$ROOT/target/release/weir-origin" "$OUT_DIR/"

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 150); do [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1") == 200 ]] && return 0; sleep 0.1; done; return 1; }

OPORT=$(free_port)
"$OUT_DIR/weir-origin" --listen "127.0.0.1:$OPORT" --name origin --threads 2 >/dev/null &
PIDS+=($!)
wait_http "http://127.0.0.1:$OPORT/__health"

case $SCENARIO in
    pass-* | newconn-* | idle-*) conf=passthrough ;;
    hit-*) conf=cache ;;
    *) echo "profile.sh: SCENARIO must be pass-SIZE, hit-SIZE, newconn-SIZE or idle-N" >&2; exit 2 ;;
esac
PORT=$(free_port)
sed -e "s|@LISTEN@|127.0.0.1:$PORT|" -e "s|@WORKERS@|$WORKERS|" -e "s|@ORIGIN@|127.0.0.1:$OPORT|" \
    -e "s|@RUN_DIR@|$OUT_DIR|g" "$ROOT/loadtest/scenarios/$conf.yaml" >"$OUT_DIR/weir.yaml"
"$OUT_DIR/weir" -c "$OUT_DIR/weir.yaml" >"$OUT_DIR/weir.log" 2>&1 &
WEIR_PID=$!
PIDS+=("$WEIR_PID")
wait_http "http://127.0.0.1:$PORT/__health"

size=${SCENARIO##*-}
url="http://127.0.0.1:$PORT/bench?size=$size"
[[ $SCENARIO == hit-* ]] && url="http://127.0.0.1:$PORT/hit?size=$size"
if [[ $SCENARIO == idle-* ]]; then
    # Where the memory of idle keep-alive connections is touched: page faults with call graphs.
    perf record -e page-faults -g --call-graph dwarf,32768 -p "$WEIR_PID" -o "$OUT_DIR/perf.data" -- sleep "$SECS" \
        2>"$OUT_DIR/perf.err" &
    PERF_PID=$!
    sleep 1
    python3 "$ROOT/loadtest/bench/idle_clients.py" --port "$PORT" --n "$size" --hold 2 >"$OUT_DIR/idle.json"
    wait "$PERF_PID" || true
    awk '/^VmRSS|^VmHWM/' "/proc/$WEIR_PID/status" | tee "$OUT_DIR/rss.txt"
else
    extra=()
    [[ $SCENARIO == newconn-* ]] && extra=(-H 'Connection: close')
    for _ in 1 2 3; do curl -s -o /dev/null "$url"; done
    timeout 60 wrk -t1 -c"$CONNECTIONS" -d3s "${extra[@]}" "$url" >/dev/null
    timeout $((SECS + 60)) wrk -t1 -c"$CONNECTIONS" -d$((SECS + 2))s --latency "${extra[@]}" "$url" >"$OUT_DIR/wrk.txt" &
    WRK_PID=$!
    sleep 1
    perf record -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$WEIR_PID" -o "$OUT_DIR/perf.data" -- sleep "$SECS" \
        2>"$OUT_DIR/perf.err"
    wait "$WRK_PID" || true
    grep -E 'Requests/sec|99%' "$OUT_DIR/wrk.txt" || true
fi
{
    echo "# self cost by symbol ($SCENARIO, $WORKERS worker(s))"
    perf report -i "$OUT_DIR/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60
    echo
    echo "# with children (inclusive), by symbol"
    perf report -i "$OUT_DIR/perf.data" --children --sort symbol --stdio -g none --percent-limit 3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -80
} >"$OUT_DIR/report.txt"
cat "$OUT_DIR/report.txt"
echo "perf data and report: $OUT_DIR" >&2
