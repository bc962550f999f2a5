#!/usr/bin/env bash
# Limiter overhead: weir pass-through without plugins vs the same with a limit_req zone that
# never limits (one client, rate far above what wrk sends), same run, alternating rounds.
#
#   bash loadtest/bench/limiter.sh          # DURATION=10 ROUNDS=5 THREADS=2 SIZE=1k BUILD=1
#
# Prints each run and the median rps ratio (limited / plain); the target is a loss of at
# most 3 %. Loopback only; every wrk run is bounded by DURATION.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-2}
SIZE=${SIZE:-1k}
BUILD=${BUILD:-1}

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
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

start_weir() { # start_weir NAME PLUGINS -> sets STARTED_PORT, appends PID
  local port; port=$(free_port)
  cat >"$TMP/$1.yaml" <<YAML
server: {listen: ["127.0.0.1:$port"], threads: $THREADS, access_log: {path: "off"}}
limits: {never: {key: client_ip, rate: 1000000r/s}}
upstreams: {o: {tiers: [{name: t, servers: ["127.0.0.1:$OPORT"]}], keepalive: 64}}
routes: [{upstream: o, plugins: [$2]}]
YAML
  "$ROOT/target/release/weir" -c "$TMP/$1.yaml" >"$TMP/$1.out" 2>"$TMP/$1.log" &
  PIDS+=($!)
  wait_port "$port"
  STARTED_PORT=$port
}
start_weir plain ""
PLAIN=$STARTED_PORT
start_weir limited "{limit_req: {zone: never, burst: 100}}"
LIMITED=$STARTED_PORT

declare -A RPS
for r in $(seq "$ROUNDS"); do
  for target in plain limited; do
    port=$PLAIN; [ "$target" = limited ] && port=$LIMITED
    wrk -t1 -c32 -d1s "http://127.0.0.1:$port/b?size=$SIZE" >/dev/null
    rps=$(wrk -t1 -c32 -d"${DURATION}s" "http://127.0.0.1:$port/b?size=$SIZE" | awk '/Requests\/sec/ {print $2}')
    echo "round $r $target $rps rps"
    RPS[$target]="${RPS[$target]:-} $rps"
  done
done
python3 - "${RPS[plain]}" "${RPS[limited]}" <<'PY'
import statistics, sys
plain = [float(x) for x in sys.argv[1].split()]
limited = [float(x) for x in sys.argv[2].split()]
p, l = statistics.median(plain), statistics.median(limited)
print(f"median rps: plain {p:.0f}, limit_req {l:.0f}; ratio {l / p:.3f} (loss {100 * (1 - l / p):.1f} %)")
PY
