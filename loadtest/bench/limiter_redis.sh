#!/usr/bin/env bash
# Fleet limiter cost: weir → weir-origin with a limit_req zone kept in Redis (`store:`) vs the
# same zone kept locally, same run, alternating rounds. Both zones never limit (one client,
# a rate far above what wrk sends), so what is measured is the decision itself: one EVALSHA
# round trip to a local redis-server per request vs a local bucket.
#
#   bash loadtest/bench/limiter_redis.sh     # DURATION=10 ROUNDS=5 THREADS=2 SIZE=1k CONNS=32 BUILD=1
#
# Prints each run (rps, p99) and the medians with the ratios redis / local. Loopback only;
# redis-server runs on a free port in a temp dir (nothing saved); every wrk run is bounded by
# DURATION; everything started is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-2}
SIZE=${SIZE:-1k}
CONNS=${CONNS:-32}
BUILD=${BUILD:-1}

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
REDIS_SERVER=$(command -v redis-server || echo /usr/bin/redis-server)
[ "$BUILD" = 1 ] && (cd "$ROOT" && cargo build --release -q -p weir -p weir-origin)

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

OPORT=$(free_port)
"$ROOT/target/release/weir-origin" --listen "127.0.0.1:$OPORT" --name origin --threads 2 >/dev/null &
PIDS+=($!)
wait_port "$OPORT"

RPORT=$(free_port)
"$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$TMP" >"$TMP/redis-server.log" 2>&1 &
PIDS+=($!)
wait_port "$RPORT"

start_weir() { # start_weir NAME ZONE_EXTRA -> sets STARTED_PORT, appends PID
  local port; port=$(free_port)
  cat >"$TMP/$1.yaml" <<YAML
server: {listen: ["127.0.0.1:$port"], threads: $THREADS, state_dir: "$TMP/state-$1", access_log: {path: "off"}}
limits: {never: {key: client_ip, rate: 1000000r/s$2}}
upstreams: {o: {tiers: [{name: t, servers: ["127.0.0.1:$OPORT"]}], keepalive: 64}}
routes: [{upstream: o, plugins: [{limit_req: {zone: never, burst: 100}}]}]
YAML
  "$ROOT/target/release/weir" -c "$TMP/$1.yaml" >"$TMP/$1.out" 2>"$TMP/$1.log" &
  PIDS+=($!)
  wait_port "$port"
  STARTED_PORT=$port
}
start_weir local ""
LOCAL=$STARTED_PORT
start_weir redis ", store: \"redis://127.0.0.1:$RPORT/0\""
REDIS=$STARTED_PORT
# The redis zone connects in the background: measure only once it shares through Redis.
for _ in $(seq 100); do grep -q "sharing the zone through" "$TMP/redis.log" && break; sleep 0.05; done
grep -q "sharing the zone through" "$TMP/redis.log" || { echo "the redis zone never connected:"; cat "$TMP/redis.log"; exit 1; }

declare -A RPS P99
for r in $(seq "$ROUNDS"); do
  for target in local redis; do
    port=$LOCAL; [ "$target" = redis ] && port=$REDIS
    wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/b?size=$SIZE" >/dev/null
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/b?size=$SIZE")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; print v}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "round $r $target ${rps} rps p99 ${p99} ms${non2xx:+ non-2xx $non2xx}"
    RPS[$target]="${RPS[$target]:-} $rps"
    P99[$target]="${P99[$target]:-} $p99"
  done
done
if grep -q "redis unreachable" "$TMP/redis.log"; then
  echo "warning: the redis zone fell back to local state during the run:"; grep "limit zone" "$TMP/redis.log"
fi
python3 - "${RPS[local]}" "${RPS[redis]}" "${P99[local]}" "${P99[redis]}" <<'PY'
import statistics, sys
rl, rr, pl, pr = ([float(x) for x in a.split()] for a in sys.argv[1:5])
ml, mr = statistics.median(rl), statistics.median(rr)
ql, qr = statistics.median(pl), statistics.median(pr)
print(f"median rps: local zone {ml:.0f}, redis zone {mr:.0f}; ratio redis/local {mr / ml:.3f} (loss {100 * (1 - mr / ml):.1f} %)")
print(f"median p99: local zone {ql:.2f} ms, redis zone {qr:.2f} ms; ratio redis/local {qr / ql:.2f}")
PY
