#!/usr/bin/env bash
# Passthrough benchmark: wrk -> {origin directly, nginx -> origin, weir -> origin}, all on
# 127.0.0.1. nginx and weir run with the same worker count and an equivalent config
# (loadtest/nginx/passthrough.conf); the targets are measured in alternating rounds.
#
#   bash loadtest/bench/passthrough.sh
#
# Knobs (environment):
#   DURATION=10        seconds per wrk run
#   ROUNDS=3           alternating rounds per (size, workers)
#   SIZES="1k 50k"     response sizes (weir-origin ?size=, plain bytes or k/m suffix)
#   WORKERS="1 2"      nginx worker_processes = weir server.threads
#   CONNECTIONS=32     wrk connections (wrk always runs with one thread: -t1)
#   WARMUP=3           seconds of wrk against each target and size before measuring
#   ORIGIN_THREADS=2   weir-origin runtime threads
#   BUILD=1            0 skips `cargo build --release` (uses the existing target/release binaries)
#   OUT=...            result file (default loadtest/results/passthrough-<date>.json; a .md
#                      with the same tables is written next to it)
#   NGINX=...          nginx binary (default: nginx on PATH or /usr/sbin/nginx)
#   QUIET_MAX_PCT=25   before each run, wait until the machine (our processes are idle then) is
#   QUIET_WAIT=60      at most this % of one core busy, for at most QUIET_WAIT seconds
#   KEEP_TMP=1         keep the per-run temp dir (configs, logs, raw wrk output)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-"1k 50k"}
WORKERS=${WORKERS:-"1 2"}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-3}
ORIGIN_THREADS=${ORIGIN_THREADS:-2}
BUILD=${BUILD:-1}
KEEP_TMP=${KEEP_TMP:-0}
QUIET_MAX_PCT=${QUIET_MAX_PCT:-25}
QUIET_WAIT=${QUIET_WAIT:-60}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT=${OUT:-$ROOT/loadtest/results/passthrough-$STAMP.json}
MD=${OUT%.json}.md
REPORT="$ROOT/loadtest/bench/report.py"

for n in "$DURATION" "$ROUNDS" "$CONNECTIONS" "$WARMUP" "$ORIGIN_THREADS" "$QUIET_MAX_PCT" "$QUIET_WAIT"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "passthrough: DURATION, ROUNDS, CONNECTIONS, WARMUP, ORIGIN_THREADS, QUIET_* must be integers" >&2; exit 2; }
done
for w in $WORKERS; do
    [[ $w =~ ^[1-9][0-9]*$ ]] || { echo "passthrough: WORKERS must be positive integers, got '$w'" >&2; exit 2; }
done

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- tools
SUDO=""
if [[ $EUID -ne 0 ]]; then SUDO="sudo"; fi
need=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need[@]}"
fi
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
command -v python3 >/dev/null 2>&1 || { echo "passthrough: python3 is required" >&2; exit 2; }

if [[ $BUILD != 0 ]]; then
    log "cargo build --release -p weir -p weir-origin (waits if another build holds the lock)"
    (cd "$ROOT" && timeout 3600 cargo build --release -p weir -p weir-origin)
fi

# ---------------------------------------------------------------- run dir and cleanup
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
chmod 755 "$RUN_DIR"
# Private copies: a concurrent `cargo build` must not swap the binaries mid-run.
mkdir -p "$RUN_DIR/bin"
cp "$ROOT/target/release/weir" "$ROOT/target/release/weir-origin" "$RUN_DIR/bin/"
WEIR="$RUN_DIR/bin/weir"
ORIGIN_BIN="$RUN_DIR/bin/weir-origin"
RUNS="$RUN_DIR/runs.jsonl"
: >"$RUNS"
PIDS=()      # every long-running process we started
WRK_PID=""
FINISHED=0

stop_pid() { # stop_pid PID: TERM, wait up to 10 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local pid=$1 keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

finalize() { # finalize [--partial]
    [[ -s $RUNS && -s $RUN_DIR/meta.json ]] || return 0
    mkdir -p "$(dirname "$OUT")"
    python3 "$REPORT" finalize --runs "$RUNS" --meta "$RUN_DIR/meta.json" --out "$OUT" --md "$MD" "$@"
    log "results: $OUT (markdown: $MD)"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $WRK_PID ]] && kill -TERM "$WRK_PID" 2>/dev/null
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ $FINISHED == 0 ]]; then
        finalize --partial || true
    fi
    if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
        log "temp dir kept: $RUN_DIR"
    else
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # wait_http URL: up to 15 s for a 200
    local i
    for ((i = 0; i < 150; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null) == 200 ]] && return 0
        sleep 0.1
    done
    echo "passthrough: $1 did not answer 200 within 15 s" >&2
    return 1
}

ticks() { # ticks PID...: utime+stime (clock ticks) summed over the processes
    local total=0 pid s
    for pid in "$@"; do
        s=$(<"/proc/$pid/stat") || continue
        s=${s##*) }
        # shellcheck disable=SC2086
        set -- $s
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

machine_ticks() { # "BUSY SOFTIRQ" ticks of the whole machine: user+nice+system, irq+softirq
    local cpu user nice system idle iowait irq softirq rest
    read -r cpu user nice system idle iowait irq softirq rest </proc/stat
    echo "$((user + nice + system)) $((irq + softirq))"
}

wait_quiet() { # wait until other processes leave the machine idle enough (bounded)
    local start=$SECONDS a0 b0 a1 b1
    while :; do
        read -r a0 b0 <<<"$(machine_ticks)"
        sleep 1
        read -r a1 b1 <<<"$(machine_ticks)"
        QUIET_BUSY_PCT=$(((a1 - a0 + b1 - b0) * 100 / CLK_TCK))
        QUIET_WAITED=$((SECONDS - start))
        ((QUIET_BUSY_PCT <= QUIET_MAX_PCT || QUIET_WAITED >= QUIET_WAIT)) && break
    done
}

hwm_kib() { # hwm_kib PID...: VmHWM summed
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

reset_hwm() { # the kernel resets VmHWM to the current RSS on "5" (best effort)
    local pid
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}

children_secs() { # CHILD_MS = CPU milliseconds of this shell's reaped children (2nd line of
    # bash `times`, e.g. "0m1.234s 0m0.567s"). Runs in this shell without forking: a $(...)
    # subshell has its own (zero) counters, and any fork would count itself.
    local lines t total=0 min sec
    times >"$RUN_DIR/times"
    mapfile -t lines <"$RUN_DIR/times"
    for t in ${lines[1]}; do
        min=${t%%m*}; sec=${t#*m}; sec=${sec%s}
        total=$((total + min * 60000 + 10#${sec%.*} * 1000 + 10#${sec#*.}))
    done
    CHILD_MS=$total
}

nginx_workers() { pgrep -P "$1" || true; }

# ---------------------------------------------------------------- origin
log "run dir $RUN_DIR"
"$ORIGIN_BIN" --listen 127.0.0.1:0 --name origin --threads "$ORIGIN_THREADS" >"$RUN_DIR/origin.out" 2>"$RUN_DIR/origin.err" &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
ORIGIN_ADDR=""
for ((i = 0; i < 150; i++)); do
    ORIGIN_ADDR=$(sed -n 's/^weir-origin origin listening on \(.*\)$/\1/p' "$RUN_DIR/origin.out")
    [[ -n $ORIGIN_ADDR ]] && break
    kill -0 "$ORIGIN_PID" 2>/dev/null || { cat "$RUN_DIR/origin.err" >&2; exit 1; }
    sleep 0.1
done
[[ -n $ORIGIN_ADDR ]] || { echo "passthrough: weir-origin did not start" >&2; exit 1; }
wait_http "http://$ORIGIN_ADDR/__health"
log "origin $ORIGIN_ADDR (pid $ORIGIN_PID, $ORIGIN_THREADS threads)"

# ---------------------------------------------------------------- meta
CLK_TCK=$(getconf CLK_TCK)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
WEIR_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain -- proxy plugins Cargo.toml 2>/dev/null) ]]; then
    WEIR_REV="$WEIR_REV+dirty"
fi
python3 "$REPORT" meta \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "nproc=$(nproc)" \
    "cpu_model=$CPU_MODEL" \
    "kernel=$(uname -r)" \
    "weir_rev=$WEIR_REV" \
    "nginx_version=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" \
    "wrk_version=$(wrk -v 2>&1 | head -1 | awk '{print $2}')" \
    "duration=$DURATION" "rounds=$ROUNDS" "sizes=$SIZES" "workers=$WORKERS" \
    "connections=$CONNECTIONS" "warmup=$WARMUP" "origin_threads=$ORIGIN_THREADS" \
    "quiet_max_pct=$QUIET_MAX_PCT" "quiet_wait=$QUIET_WAIT" \
    "clk_tck=$CLK_TCK" >"$RUN_DIR/meta.json"

# ---------------------------------------------------------------- SUTs
start_weir() { # start_weir WORKERS PORT -> WEIR_PID
    local w=$1 port=$2 conf="$RUN_DIR/weir-$1.yaml"
    cat >"$conf" <<EOF
server:
  listen: ["127.0.0.1:$port"]
  threads: $w
  grace_period: 2s
  access_log: { path: off }
upstreams:
  origin: { tiers: [{ name: origin, servers: ["$ORIGIN_ADDR"] }], keepalive: 64 }
routes:
  - { name: all, upstream: origin }
EOF
    "$WEIR" -t -c "$conf" >"$RUN_DIR/weir-$w.check" 2>&1 || { cat "$RUN_DIR/weir-$w.check" >&2; return 1; }
    "$WEIR" -c "$conf" >"$RUN_DIR/weir-$w.log" 2>&1 &
    WEIR_PID=$!
    PIDS+=("$WEIR_PID")
    wait_http "http://127.0.0.1:$port/__health"
}

start_nginx() { # start_nginx WORKERS PORT -> NGINX_PID
    local w=$1 port=$2 dir="$RUN_DIR/nginx-$1" user_line=""
    mkdir -p "$dir"
    if [[ $EUID -eq 0 ]]; then user_line="user root;"; fi
    sed -e "s|@USER_LINE@|$user_line|" -e "s|@WORKERS@|$w|" -e "s|@RUN_DIR@|$dir|g" \
        -e "s|@LISTEN@|127.0.0.1:$port|" -e "s|@ORIGIN@|$ORIGIN_ADDR|" \
        "$ROOT/loadtest/nginx/passthrough.conf" >"$dir/nginx.conf"
    "$NGINX" -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" || { cat "$dir/error.log" >&2; return 1; }
    "$NGINX" -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$port/__health"
    local i
    for ((i = 0; i < 50; i++)); do
        [[ $(nginx_workers "$NGINX_PID" | wc -l) -ge $w ]] && break
        sleep 0.1
    done
}

check_target() { # check_target NAME URL_BASE: forwarded headers and body sizes
    local name=$1 base=$2 size got want
    curl -s --max-time 5 "$base/__echo" >"$RUN_DIR/echo-$name.json"
    if [[ $name != direct ]]; then
        python3 - "$RUN_DIR/echo-$name.json" "$name" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["headers"]
missing = [k for k in ("x-forwarded-for", "x-real-ip", "x-forwarded-proto") if k not in h]
if missing:
    sys.exit(f"passthrough: {sys.argv[2]} did not forward {missing}: {h}")
PY
    fi
    for size in $SIZES; do
        want=$(python3 -c 'import sys, re
m = re.fullmatch(r"(\d+)([kKmMgG]?)", sys.argv[1])
print(int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()])' "$size")
        got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 "$base/bench?size=$size")
        [[ $got == "200 $want" ]] || { echo "passthrough: $name ?size=$size gave '$got', want '200 $want'" >&2; return 1; }
    done
}

run_wrk() { # run_wrk SECONDS URL OUTFILE (bounded, interruptible)
    timeout -k 5 $(($1 + 30)) wrk -t1 -c"$CONNECTIONS" -d"$1"s --latency "$2" >"$3" 2>&1 &
    WRK_PID=$!
    local rc=0
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    return "$rc"
}

measure() { # measure TARGET URL SIZE WORKERS ROUND
    local target=$1 url=$2 size=$3 w=$4 round=$5 sut=() rss=()
    case $target in
        direct) sut=("$ORIGIN_PID"); rss=("$ORIGIN_PID") ;;
        weir) sut=("$WEIR_PID"); rss=("$WEIR_PID") ;;
        nginx)
            mapfile -t rss < <(nginx_workers "$NGINX_PID")
            sut=("$NGINX_PID" "${rss[@]}") ;;
    esac
    local out="$RUN_DIR/wrk-$target-$size-w$w-r$round.txt"
    reset_hwm "${rss[@]}"
    local c0 o0 m0 s0 k0 c1 o1 m1 s1 k1
    wait_quiet
    children_secs; k0=$CHILD_MS
    c0=$(ticks "${sut[@]}"); o0=$(ticks "$ORIGIN_PID"); read -r m0 s0 <<<"$(machine_ticks)"
    run_wrk "$DURATION" "$url" "$out" || { cat "$out" >&2; echo "passthrough: wrk failed against $target" >&2; return 1; }
    c1=$(ticks "${sut[@]}"); o1=$(ticks "$ORIGIN_PID"); read -r m1 s1 <<<"$(machine_ticks)"
    children_secs; k1=$CHILD_MS
    python3 "$REPORT" record --wrk "$out" --target "$target" --size "$size" --workers "$w" \
        --round "$round" --duration "$DURATION" --clk-tck "$CLK_TCK" \
        --sut-ticks $((c1 - c0)) --origin-ticks $((o1 - o0)) --machine-ticks $((m1 - m0)) --softirq-ticks $((s1 - s0)) \
        --quiet-busy-pct "$QUIET_BUSY_PCT" --quiet-waited "$QUIET_WAITED" \
        --wrk-cpu-ms $((k1 - k0)) \
        --rss-kib "$(hwm_kib "${rss[@]}")" >>"$RUNS"
    python3 -c 'import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
err = r["non2xx"] + sum(r["socket_errors"].values())
print("  %-6s %5s w%s r%s  %9.0f rps  p50 %6.2f ms  p99 %6.2f ms  cpu %5.2f s  %8.0f req/cpu-s  other %4.1f s  (idle wait %ss, %s%% busy)%s" % (
    r["target"], r["size"], r["workers"], r["round"], r["rps"], r.get("p50_ms", 0), r.get("p99_ms", 0),
    r["sut_cpu_s"], r["req_per_cpu_s"] or 0, r["other_cpu_s"], r["quiet_waited_s"], r["quiet_busy_pct"],
    ("  ERRORS %d" % err) if err else ""))' "$RUNS" >&2
}

# ---------------------------------------------------------------- main loop
TARGETS=(direct nginx weir)
for w in $WORKERS; do
    NGINX_PORT=$(free_port)
    WEIR_PORT=$(free_port)
    while [[ $WEIR_PORT == "$NGINX_PORT" ]]; do WEIR_PORT=$(free_port); done
    start_nginx "$w" "$NGINX_PORT"
    start_weir "$w" "$WEIR_PORT"
    log "workers=$w: nginx 127.0.0.1:$NGINX_PORT (pid $NGINX_PID), weir 127.0.0.1:$WEIR_PORT (pid $WEIR_PID)"
    declare -A BASE=([direct]="http://$ORIGIN_ADDR" [nginx]="http://127.0.0.1:$NGINX_PORT" [weir]="http://127.0.0.1:$WEIR_PORT")
    for t in "${TARGETS[@]}"; do check_target "$t" "${BASE[$t]}"; done
    if ((WARMUP > 0)); then
        for size in $SIZES; do
            for t in "${TARGETS[@]}"; do
                run_wrk "$WARMUP" "${BASE[$t]}/bench?size=$size" "$RUN_DIR/warmup-$t-$size-w$w.txt"
            done
        done
    fi
    for size in $SIZES; do
        for ((r = 1; r <= ROUNDS; r++)); do
            # Rotate the order each round so no target always runs first or last.
            for ((k = 0; k < ${#TARGETS[@]}; k++)); do
                t=${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]}
                measure "$t" "${BASE[$t]}/bench?size=$size" "$size" "$w" "$r"
            done
        done
    done
    # Log lines above INFO from weir, and nginx's error log, go into the result.
    grep -v ' INFO ' "$RUN_DIR/weir-$w.log" >"$RUN_DIR/weir-$w.warnings" || true
    stop_pid "$NGINX_PID"; forget_pid "$NGINX_PID"
    stop_pid "$WEIR_PID"; forget_pid "$WEIR_PID"
    python3 - "$RUN_DIR/meta.json" "$w" "$RUN_DIR/weir-$w.warnings" "$RUN_DIR/nginx-$w/error.log" "$RUN_DIR/weir-$w.log" <<'PY'
import json, sys
path, w, weir_warn, nginx_err, weir_log = sys.argv[1:]
meta = json.load(open(path))
read = lambda p: open(p, errors="replace").read().splitlines()
logs = meta.setdefault("logs", {})
logs[f"workers_{w}"] = {
    "weir_non_info_count": len(read(weir_warn)),
    "weir_non_info": read(weir_warn)[:50],
    "weir_log_lines": len(read(weir_log)),
    "nginx_error_log": read(nginx_err)[:50],
}
json.dump(meta, open(path, "w"))
PY
    if [[ -s $RUN_DIR/weir-$w.warnings ]]; then
        log "weir (workers=$w) logged above INFO (count, message without timestamp and peer port):"
        sed -E -e 's/^\[[^ ]+ //' -e 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' "$RUN_DIR/weir-$w.warnings" |
            sort | uniq -c | sort -rn | head -10 >&2
    fi
    if [[ -s $RUN_DIR/nginx-$w/error.log ]]; then
        log "nginx (workers=$w) error log:"; head -20 "$RUN_DIR/nginx-$w/error.log" >&2
    fi
done

FINISHED=1
finalize
