#!/usr/bin/env bash
# weir vs nginx: the load-test suite users run to compare them with wrk and oha.
#
#   bash loadtest/bench/run.sh            # every scenario, workers 1 and 2, 3 rounds of 10 s
#   bash loadtest/bench/run.sh --soak     # the soak instead (30 min of the image-host mix)
#   DURATION=3 ROUNDS=1 SCENARIOS="pass-1k hit-50k" WORKERS=1 bash loadtest/bench/run.sh
#
# It installs what is missing (nginx-light, wrk, curl, openssl with apt; oha with cargo),
# builds weir and weir-origin (release), starts the fixture origin, and for each worker
# count and scenario starts nginx (loadtest/nginx/<scenario>.conf) and weir
# (loadtest/scenarios/<scenario>.yaml) with the same worker count, checks both, warms them,
# and measures them in alternating rounds. Loopback only; every client run is bounded.
# Results: loadtest/results/suite-<date>.json (every run, raw client output), .md (tables)
# and .png (rps and p99 per scenario). See loadtest/README.md for the knobs and the method.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH="$ROOT/loadtest/bench"
ALL_SCENARIOS="pass-1k pass-50k pass-1m hit-50k hitdisk-50k hit-1m image-host newconn-1k h2-tls-1k h2-tls-50k limiter idle-10k stream-1g"
SOAK=${SOAK:-0}
IMAGEHOST_MEMORY=${IMAGEHOST_MEMORY:-}
WEIR_MEMORY="" # set by throughput(): the cache memory tier of weir's config, when not the template's
for arg in "$@"; do
    case $arg in
        --soak) SOAK=1 ;;
        -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg' (--soak, --help)" >&2; exit 2 ;;
    esac
done

SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
WORKERS=${WORKERS:-"1 2"}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WARMUP=${WARMUP:-3}
ORIGIN_THREADS=${ORIGIN_THREADS:-2}
H2_CONNS=${H2_CONNS:-8}
H2_STREAMS=${H2_STREAMS:-4}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
IDLE_HOLD=${IDLE_HOLD:-5}
STREAM_SIZE=${STREAM_SIZE:-1g}
STREAM_RATE=${STREAM_RATE:-200M}
IMAGES=${IMAGES:-10000}
MISS=${MISS:-0.10}
ZIPF=${ZIPF:-1.0}
SOAK_DURATION=${SOAK_DURATION:-1800}
SOAK_SLICE=${SOAK_SLICE:-60}
SOAK_SAMPLE=${SOAK_SAMPLE:-10}
SOAK_CONNECTIONS=${SOAK_CONNECTIONS:-8}
SOAK_DELAY_MS=${SOAK_DELAY_MS:-5}
SOAK_WORKERS=${SOAK_WORKERS:-2}
SOAK_TARGETS=${SOAK_TARGETS:-weir}
BUILD=${BUILD:-1}
PLOT=${PLOT:-1}
KEEP_TMP=${KEEP_TMP:-0}
QUIET_MAX_PCT=${QUIET_MAX_PCT:-25}
QUIET_WAIT=${QUIET_WAIT:-60}
OHA_INSTALL_TIMEOUT=${OHA_INSTALL_TIMEOUT:-1800}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
if [[ $SOAK == 1 ]]; then
    OUT=${OUT:-$ROOT/loadtest/results/soak-$STAMP.json}
else
    OUT=${OUT:-$ROOT/loadtest/results/suite-$STAMP.json}
fi
MD=${OUT%.json}.md
PNG=${OUT%.json}.png
REPORT="$BENCH/report.py"

for n in "$DURATION" "$ROUNDS" "$CONNECTIONS" "$WARMUP" "$ORIGIN_THREADS" "$QUIET_MAX_PCT" "$QUIET_WAIT" \
    "$H2_CONNS" "$H2_STREAMS" "$IDLE_CLIENTS" "$IDLE_HOLD" "$IMAGES" "$SOAK_DURATION" "$SOAK_SLICE" \
    "$SOAK_SAMPLE" "$SOAK_CONNECTIONS" "$SOAK_DELAY_MS" "$SOAK_WORKERS" "$OHA_INSTALL_TIMEOUT"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "run.sh: numeric knobs must be integers, got '$n'" >&2; exit 2; }
done
for w in $WORKERS; do
    [[ $w =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: WORKERS must be positive integers, got '$w'" >&2; exit 2; }
done
for sc in $SCENARIOS; do
    [[ $sc =~ ^(pass|hit|hitdisk|newconn|h2-tls)-[0-9]+[kmg]?$|^(image-host|limiter|idle-[0-9]+k?|stream-[0-9]+[kmg]?)$ ]] ||
        { echo "run.sh: unknown scenario '$sc' (known: $ALL_SCENARIOS; sizes may vary)" >&2; exit 2; }
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
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need[@]}"
fi
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
command -v python3 >/dev/null 2>&1 || { echo "run.sh: python3 is required" >&2; exit 2; }
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
SKIPPED=()
if [[ $SOAK != 1 && " $SCENARIOS " == *" h2-tls-"* ]] && ! command -v oha >/dev/null 2>&1; then
    log "installing oha: cargo install oha --locked (bounded to ${OHA_INSTALL_TIMEOUT}s; it compiles for minutes)"
    if ! timeout "$OHA_INSTALL_TIMEOUT" cargo install oha --locked >&2; then
        log "oha could not be installed: the h2-tls scenarios are skipped"
    fi
fi
if [[ $PLOT == 1 ]] && ! python3 -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib for the plot (pip)"
    timeout 600 python3 -m pip install -q matplotlib >&2 || log "matplotlib could not be installed: no plot"
fi

if [[ $BUILD != 0 ]]; then
    log "cargo build --release -p weir -p weir-origin (waits if another build holds the lock)"
    (cd "$ROOT" && timeout 3600 cargo build --release -p weir -p weir-origin)
fi

# Room for 10,000 idle clients (client, nginx and weir each hold one fd per connection).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------- run dir and cleanup
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/weir-suite.XXXXXX")
chmod 755 "$RUN_DIR"
mkdir -p "$RUN_DIR/bin"
# Private copies: a concurrent `cargo build` must not swap the binaries mid-run.
cp "$ROOT/target/release/weir" "$ROOT/target/release/weir-origin" "$RUN_DIR/bin/"
WEIR="$RUN_DIR/bin/weir"
ORIGIN_BIN="$RUN_DIR/bin/weir-origin"
RUNS="$RUN_DIR/runs.jsonl"
: >"$RUNS"
PIDS=()
CLIENT_PID=""
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
    if [[ $PLOT == 1 ]]; then
        python3 "$REPORT" plot "$OUT" "$PNG" || log "no plot (matplotlib missing?)"
    fi
    log "results: $OUT (markdown: $MD)"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $CLIENT_PID ]] && kill -TERM "$CLIENT_PID" 2>/dev/null
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
        [[ $(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2>/dev/null) == 200 ]] && return 0
        sleep 0.1
    done
    echo "run.sh: $1 did not answer 200 within 15 s" >&2
    return 1
}

bytes_of() { # bytes_of 50k -> 51200
    python3 -c 'import sys, re
m = re.fullmatch(r"(\d+)([kKmMgG]?)", sys.argv[1])
print(int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()])' "$1"
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

status_kib() { # status_kib FIELD PID...: a /proc/PID/status field (VmRSS, VmHWM) summed
    local field=$1 total=0 pid v
    shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

pss_kib() { # pss_kib PID...: proportional set size summed (shared pages split between them)
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '$1 == "Pss:" {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

fd_count() { # fd_count PID...: open file descriptors summed
    local total=0 pid
    for pid in "$@"; do total=$((total + $(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l))); done
    echo "$total"
}

reset_hwm() { # the kernel resets VmHWM to the current RSS on "5" (best effort)
    local pid
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}

children_secs() { # CHILD_MS = CPU ms of this shell's reaped children (bash `times`, no fork)
    local lines t total=0 min sec
    times >"$RUN_DIR/times"
    mapfile -t lines <"$RUN_DIR/times"
    for t in ${lines[1]}; do
        min=${t%%m*}; sec=${t#*m}; sec=${sec%s}
        total=$((total + min * 60000 + 10#${sec%.*} * 1000 + 10#${sec#*.}))
    done
    CHILD_MS=$total
}

start_origin() { # start_origin NAME THREADS -> ORIGIN_ADDR, ORIGIN_LAST_PID
    local name=$1 threads=$2 i addr=""
    "$ORIGIN_BIN" --listen 127.0.0.1:0 --name "$name" --threads "$threads" \
        >"$RUN_DIR/origin-$name.out" 2>"$RUN_DIR/origin-$name.err" &
    ORIGIN_LAST_PID=$!
    PIDS+=("$ORIGIN_LAST_PID")
    for ((i = 0; i < 150; i++)); do
        addr=$(sed -n "s/^weir-origin $name listening on \(.*\)\$/\1/p" "$RUN_DIR/origin-$name.out" 2>/dev/null || true)
        [[ -n $addr ]] && break
        kill -0 "$ORIGIN_LAST_PID" 2>/dev/null || { cat "$RUN_DIR/origin-$name.err" >&2; exit 1; }
        sleep 0.1
    done
    [[ -n $addr ]] || { echo "run.sh: weir-origin $name did not start" >&2; exit 1; }
    wait_http "http://$addr/__health"
    ORIGIN_ADDR=$addr
}

# ---------------------------------------------------------------- SUTs
# Each running SUT is a name (nginx, weir, weir-limit) with a kind, a main PID and a base URL.
declare -A SUT_PID SUT_KIND SUT_BASE SUT_LOG
SUT_NAMES=()

fill_template() { # fill_template SRC DST DIR PORT WORKERS
    local user_line=""
    if [[ $EUID -eq 0 ]]; then user_line="user root;"; fi
    sed -e "s|@USER_LINE@|$user_line|" -e "s|@WORKERS@|$5|" -e "s|@RUN_DIR@|$3|g" \
        -e "s|@LISTEN@|127.0.0.1:$4|" -e "s|@ORIGIN@|$ORIGIN_ADDR|" \
        -e "s|@ORIGIN2@|$ORIGIN2_ADDR|" -e "s|@ORIGIN3@|$ORIGIN3_ADDR|" \
        -e "s|@CERT@|$RUN_DIR/tls/cert.pem|" -e "s|@KEY@|$RUN_DIR/tls/key.pem|" "$1" >"$2"
}

start_sut() { # start_sut NAME KIND CONFIG WORKERS SCHEME
    local name=$1 kind=$2 config=$3 w=$4 scheme=$5 port dir i
    port=$(free_port)
    dir="$RUN_DIR/sut-$name-$config-w$w-$((RANDOM))"
    mkdir -p "$dir"
    if [[ $kind == nginx ]]; then
        fill_template "$ROOT/loadtest/nginx/$config.conf" "$dir/nginx.conf" "$dir" "$port" "$w"
        "$NGINX" -t -q -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" || { cat "$dir/error.log" >&2; return 1; }
        "$NGINX" -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout" 2>&1 &
        SUT_LOG[$name]="$dir/error.log"
    else
        fill_template "$ROOT/loadtest/scenarios/$config.yaml" "$dir/weir.yaml" "$dir" "$port" "$w"
        # hitdisk-*: the memory tier off, so every HIT is read from the zone's files;
        # image-host: IMAGEHOST_MEMORY, when set
        [[ -n $WEIR_MEMORY ]] && sed -i -e "s|^\(    memory:\) [^ ]*|\1 $WEIR_MEMORY|" "$dir/weir.yaml"
        "$WEIR" -t -c "$dir/weir.yaml" >"$dir/check" 2>&1 || { cat "$dir/check" >&2; return 1; }
        "$WEIR" -c "$dir/weir.yaml" >"$dir/weir.log" 2>&1 &
        SUT_LOG[$name]="$dir/weir.log"
    fi
    SUT_PID[$name]=$!
    SUT_KIND[$name]=$kind
    SUT_BASE[$name]="$scheme://127.0.0.1:$port"
    SUT_NAMES+=("$name")
    PIDS+=("${SUT_PID[$name]}")
    wait_http "${SUT_BASE[$name]}/__health"
    if [[ $kind == nginx ]]; then
        for ((i = 0; i < 50; i++)); do
            [[ $(pgrep -P "${SUT_PID[$name]}" | wc -l) -ge $w ]] && break
            sleep 0.1
        done
    fi
}

sut_pids() { # sut_pids NAME: the main PID and, for nginx, its children (workers, cache manager)
    local pid=${SUT_PID[$1]}
    echo "$pid"
    [[ ${SUT_KIND[$1]} == nginx ]] && pgrep -P "$pid" || true
}

sut_workers() { # sut_workers NAME: the PIDs that serve (nginx: the worker processes)
    local pid=${SUT_PID[$1]} p
    if [[ ${SUT_KIND[$1]} == nginx ]]; then
        for p in $(pgrep -P "$pid"); do
            grep -q 'worker process' "/proc/$p/cmdline" 2>/dev/null && echo "$p"
        done
    else
        echo "$pid"
    fi
}

stop_suts() { # stop every SUT; keep their non-INFO log lines for the result
    local name
    for name in "${SUT_NAMES[@]}"; do
        stop_pid "${SUT_PID[$name]}"
        forget_pid "${SUT_PID[$name]}"
        python3 - "$RUN_DIR/meta.json" "$1" "$name" "${SUT_KIND[$name]}" "${SUT_LOG[$name]}" <<'PY'
import json, sys
path, where, name, kind, log = sys.argv[1:]
meta = json.load(open(path))
try:
    lines = open(log, errors="replace").read().splitlines()
except OSError:
    lines = []
if kind == "weir":
    lines = [l for l in lines if " INFO " not in l]
if lines:
    meta.setdefault("logs", {})[f"{where}/{name}"] = {"count": len(lines), "lines": lines[:30]}
json.dump(meta, open(path, "w"))
PY
    done
    SUT_NAMES=()
}

# ---------------------------------------------------------------- clients
run_client() { # run_client CLIENT SECONDS URL OUTFILE (bounded, interruptible)
    local client=$1 secs=$2 url=$3 out=$4 rc=0
    case $client in
        wrk) timeout -k 5 $((secs + 30)) wrk -t1 -c"$CONNECTIONS" -d"$secs"s --latency "$url" >"$out" 2>&1 & ;;
        wrk-close)
            timeout -k 5 $((secs + 30)) wrk -t1 -c"$CONNECTIONS" -d"$secs"s --latency -H 'Connection: close' "$url" >"$out" 2>&1 & ;;
        wrk-mix)
            IMAGEHOST_TABLE="$RUN_DIR/imagehost/table.txt" IMAGEHOST_NONCE="n$RANDOM$RANDOM" \
                timeout -k 5 $((secs + 30)) wrk -t1 -c"$CONNECTIONS" -d"$secs"s --latency \
                -s "$ROOT/loadtest/scenarios/image-host.lua" "$url" >"$out" 2>&1 & ;;
        oha-h2)
            timeout -k 5 $((secs + 30)) oha -z "$secs"s -c "$H2_CONNS" -p "$H2_STREAMS" --http2 --insecure \
                --no-tui --output-format json "$url" >"$out" 2>"$out.err" & ;;
        *) echo "run.sh: unknown client $client" >&2; return 1 ;;
    esac
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=""
    return "$rc"
}

measure() { # measure SCENARIO TARGET WORKERS ROUND CLIENT URL
    local sc=$1 target=$2 w=$3 round=$4 client=$5 url=$6 sut=() rss=()
    mapfile -t sut < <(sut_pids "$target")
    mapfile -t rss < <(sut_workers "$target")
    local out="$RUN_DIR/out-$sc-$target-w$w-r$round.txt"
    reset_hwm "${rss[@]}"
    local c0 o0 m0 s0 k0 c1 o1 m1 s1 k1
    wait_quiet
    children_secs; k0=$CHILD_MS
    c0=$(ticks "${sut[@]}"); o0=$(ticks "${ORIGIN_PIDS[@]}"); read -r m0 s0 <<<"$(machine_ticks)"
    run_client "$client" "$DURATION" "$url" "$out" ||
        { cat "$out" "$out.err" >&2 2>/dev/null; echo "run.sh: $client failed against $target ($sc)" >&2; return 1; }
    c1=$(ticks "${sut[@]}"); o1=$(ticks "${ORIGIN_PIDS[@]}"); read -r m1 s1 <<<"$(machine_ticks)"
    children_secs; k1=$CHILD_MS
    python3 "$REPORT" record --client "${client%%-*}" --out-file "$out" --scenario "$sc" --target "$target" \
        --size "${sc##*-}" --workers "$w" --round "$round" --duration "$DURATION" --clk-tck "$CLK_TCK" \
        --sut-ticks $((c1 - c0)) --origin-ticks $((o1 - o0)) --machine-ticks $((m1 - m0)) --softirq-ticks $((s1 - s0)) \
        --quiet-busy-pct "$QUIET_BUSY_PCT" --quiet-waited "$QUIET_WAITED" \
        --wrk-cpu-ms $((k1 - k0)) --rss-kib "$(status_kib VmHWM "${rss[@]}")" >>"$RUNS"
    python3 "$REPORT" line "$RUNS" >&2
}

# ---------------------------------------------------------------- checks and warm-up
check_forwarding() { # check_forwarding NAME: /__echo shows the forwarded headers
    curl -sk --max-time 5 "${SUT_BASE[$1]}/__echo" >"$RUN_DIR/echo-$1.json"
    python3 - "$RUN_DIR/echo-$1.json" "$1" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["headers"]
missing = [k for k in ("x-forwarded-for", "x-real-ip", "x-forwarded-proto") if k not in h]
if missing:
    sys.exit(f"run.sh: {sys.argv[2]} did not forward {missing}: {h}")
PY
}

check_get() { # check_get NAME PATH WANT_BYTES [HTTP_VERSION_FLAG]: 200 with exactly that many bytes
    local got
    got=$(curl -sk ${4:-} -o /dev/null -w '%{http_code} %{size_download} %{http_version}' --max-time 30 "${SUT_BASE[$1]}$2")
    [[ $got == "200 $3 "* ]] || { echo "run.sh: $1 $2 gave '$got', want '200 $3'" >&2; return 1; }
    if [[ -n ${4:-} && $got != *" 2" ]]; then echo "run.sh: $1 did not answer over HTTP/2 ('$got')" >&2; return 1; fi
}

cache_status() { # cache_status NAME PATH -> X-Cache-Status of a GET
    curl -sk -o /dev/null -D - --max-time 30 "${SUT_BASE[$1]}$2" | tr -d '\r' |
        awk -F': ' 'tolower($1) == "x-cache-status" {print $2}'
}

warm_hit() { # warm_hit NAME PATH: GET until X-Cache-Status is HIT (at most 50 tries)
    local i s=""
    for ((i = 0; i < 50; i++)); do
        s=$(cache_status "$1" "$2")
        [[ $s == HIT ]] && return 0
        sleep 0.1
    done
    echo "run.sh: $1 $2 never became a HIT (last X-Cache-Status '$s')" >&2
    return 1
}

imagehost_note() { # imagehost_note KEY NAME JSON: keep a warm/sample summary in meta
    python3 - "$RUN_DIR/meta.json" "$1" "$2" "$3" <<'PY'
import json, sys
path, key, name, text = sys.argv[1:]
meta = json.load(open(path))
meta.setdefault("image_host", {}).setdefault(key, {})[name] = json.loads(text)
json.dump(meta, open(path, "w"))
PY
}

# ---------------------------------------------------------------- scenarios
throughput() { # throughput SCENARIO WORKERS
    local sc=$1 w=$2 size="" conf path client targets=(nginx weir) scheme=http t r k warmsize
    WEIR_MEMORY=""
    case $sc in
        pass-*) size=${sc#pass-}; conf=passthrough; path="/bench?size=$size"; client=wrk ;;
        newconn-*) size=${sc#newconn-}; conf=passthrough; path="/bench?size=$size"; client=wrk-close ;;
        hit-*) size=${sc#hit-}; conf=cache; path="/hit?size=$size"; client=wrk ;;
        hitdisk-*) size=${sc#hitdisk-}; conf=cache; path="/hit?size=$size"; client=wrk; WEIR_MEMORY=0 ;;
        h2-tls-*) size=${sc#h2-tls-}; conf=tls-h2; path="/bench?size=$size"; client=oha-h2; scheme=https ;;
        image-host) conf=image-host; path="/"; client=wrk-mix; WEIR_MEMORY=$IMAGEHOST_MEMORY ;;
        limiter) size=1k; conf=passthrough; path="/bench?size=1k"; client=wrk; targets=(weir weir-limit) ;;
    esac
    if [[ $client == oha-h2 ]] && ! command -v oha >/dev/null 2>&1; then
        log "$sc: skipped (no oha)"; SKIPPED+=("$sc w$w: no oha"); return 0
    fi
    for t in "${targets[@]}"; do
        case $t in
            nginx) start_sut nginx nginx "$conf" "$w" "$scheme" ;;
            weir) start_sut weir weir "$conf" "$w" "$scheme" ;;
            weir-limit) start_sut weir-limit weir limiter "$w" "$scheme" ;;
        esac
    done
    log "$sc workers=$w: $(for t in "${targets[@]}"; do printf '%s %s (pid %s)  ' "$t" "${SUT_BASE[$t]}" "${SUT_PID[$t]}"; done)"
    for t in "${targets[@]}"; do
        case $sc in
            h2-tls-*) check_get "$t" "$path" "$(bytes_of "$size")" --http2 ;;
            image-host)
                check_forwarding "$t"
                log "  warming $t: every one of the $IMAGES images once"
                imagehost_note "warm_w$w" "$t" "$(python3 "$BENCH/imagehost.py" warm --base "${SUT_BASE[$t]}" --dir "$RUN_DIR/imagehost")"
                imagehost_note "sample_after_warm_w$w" "$t" "$(python3 "$BENCH/imagehost.py" sample --base "${SUT_BASE[$t]}" --dir "$RUN_DIR/imagehost" --n 2000 --nonce "w$w")"
                log "  $t after warm-up: $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["image_host"][sys.argv[2]][sys.argv[3]])' "$RUN_DIR/meta.json" "sample_after_warm_w$w" "$t")"
                ;;
            hit-* | hitdisk-*)
                check_forwarding "$t"
                check_get "$t" "$path" "$(bytes_of "$size")"
                warm_hit "$t" "$path" ;;
            *)
                check_forwarding "$t"
                check_get "$t" "$path" "$(bytes_of "$size")" ;;
        esac
    done
    if ((WARMUP > 0)); then
        for t in "${targets[@]}"; do
            run_client "$client" "$WARMUP" "${SUT_BASE[$t]}$path" "$RUN_DIR/warmup-$sc-$t-w$w.txt" ||
                { cat "$RUN_DIR/warmup-$sc-$t-w$w.txt" >&2; return 1; }
        done
    fi
    if [[ $sc == hit-* || $sc == hitdisk-* ]]; then
        for t in "${targets[@]}"; do
            [[ $(cache_status "$t" "$path") == HIT ]] || { echo "run.sh: $t $path is not a HIT after the warm-up" >&2; return 1; }
        done
    fi
    for ((r = 1; r <= ROUNDS; r++)); do
        for ((k = 0; k < ${#targets[@]}; k++)); do
            t=${targets[$(((k + r - 1) % ${#targets[@]}))]}
            measure "$sc" "$t" "$w" "$r" "$client" "${SUT_BASE[$t]}$path"
        done
    done
    if [[ $sc == image-host ]]; then
        for t in "${targets[@]}"; do
            imagehost_note "sample_after_runs_w$w" "$t" "$(python3 "$BENCH/imagehost.py" sample --base "${SUT_BASE[$t]}" --dir "$RUN_DIR/imagehost" --n 2000 --nonce "end$w")"
        done
    fi
    stop_suts "$sc-w$w"
}

record_kv() { python3 "$REPORT" kv "$@" >>"$RUNS"; python3 "$REPORT" line "$RUNS" >&2; }

idle() { # idle SCENARIO WORKERS: RSS with N idle keep-alive clients
    local sc=$1 w=$2 n=${1#idle-} t pids rss0 pss0 fd0 i ready got
    [[ $n == *k ]] && n=$((${n%k} * 1000))   # idle-10k: 10,000 clients
    for t in nginx weir; do
        if [[ $t == nginx ]]; then start_sut nginx nginx idle "$w" http; else start_sut weir weir passthrough "$w" http; fi
        check_get "$t" "/idle?size=1k" 1024
        mapfile -t pids < <(sut_pids "$t")
        rss0=$(status_kib VmRSS "${pids[@]}"); pss0=$(pss_kib "${pids[@]}"); fd0=$(fd_count "${pids[@]}")
        reset_hwm "${pids[@]}"
        ready="$RUN_DIR/idle-$t-w$w.ready"
        wait_quiet
        python3 "$BENCH/idle_clients.py" --port "${SUT_BASE[$t]##*:}" --n "$n" --hold 600 --ready "$ready" \
            >"$RUN_DIR/idle-$t-w$w.json" 2>"$RUN_DIR/idle-$t-w$w.err" &
        CLIENT_PID=$!
        for ((i = 0; i < 1200; i++)); do
            [[ -s $ready ]] && break
            kill -0 "$CLIENT_PID" 2>/dev/null || break
            sleep 0.1
        done
        [[ -s $ready ]] || { cat "$RUN_DIR/idle-$t-w$w.err" >&2; echo "run.sh: idle clients did not open within 120 s" >&2; return 1; }
        sleep "$IDLE_HOLD"
        mapfile -t pids < <(sut_pids "$t")
        local rss1 pss1 hwm1 fd1
        rss1=$(status_kib VmRSS "${pids[@]}"); pss1=$(pss_kib "${pids[@]}")
        hwm1=$(status_kib VmHWM "${pids[@]}"); fd1=$(fd_count "${pids[@]}")
        kill -TERM "$CLIENT_PID" 2>/dev/null || true
        wait "$CLIENT_PID" || true
        CLIENT_PID=""
        got=$(cat "$RUN_DIR/idle-$t-w$w.json")
        record_kv kind=idle "scenario=$sc" "target=$t" "workers=$w" "clients=$n" \
            "rss_before_kib=$rss0" "pss_before_kib=$pss0" "fds_before=$fd0" \
            "rss_kib=$rss1" "pss_kib=$pss1" "hwm_kib=$hwm1" "fds=$fd1" \
            "processes=${#pids[@]}" "quiet_busy_pct=$QUIET_BUSY_PCT" "client=$got"
        stop_suts "$sc-w$w"
    done
}

stream() { # stream SCENARIO WORKERS: RSS while one client streams a large object through
    local sc=$1 w=$2 size=${1#stream-} t pids rss0 max cur samples want got
    want=$(bytes_of "$size")
    for t in nginx weir; do
        start_sut "$t" "$t" passthrough "$w" http
        check_get "$t" "/bench?size=1k" 1024
        mapfile -t pids < <(sut_workers "$t")
        rss0=$(status_kib VmRSS "${pids[@]}")
        max=$rss0
        samples=()
        curl -s -o /dev/null --limit-rate "$STREAM_RATE" -w '%{http_code} %{size_download}' --max-time 600 \
            "${SUT_BASE[$t]}/stream?size=$size" >"$RUN_DIR/stream-$t-w$w.txt" &
        CLIENT_PID=$!
        while kill -0 "$CLIENT_PID" 2>/dev/null; do
            cur=$(status_kib VmRSS "${pids[@]}")
            ((cur > max)) && max=$cur
            samples+=("$cur")
            sleep 0.25
        done
        wait "$CLIENT_PID" || true
        CLIENT_PID=""
        got=$(cat "$RUN_DIR/stream-$t-w$w.txt")
        [[ $got == "200 $want" ]] || log "stream $t: got '$got', want '200 $want'"
        record_kv kind=stream "scenario=$sc" "target=$t" "workers=$w" "bytes=$want" "result=$got" \
            "rss_before_kib=$rss0" "rss_max_kib=$max" "rss_after_kib=$(status_kib VmRSS "${pids[@]}")" \
            "samples_kib=$(IFS=,; echo "${samples[*]}")"
        stop_suts "$sc-w$w"
    done
}

# ---------------------------------------------------------------- soak
soak() {
    local t start_t slice_no=0 left secs out pids now
    local sampler_out="$RUN_DIR/soak-samples.jsonl"
    for t in $SOAK_TARGETS; do start_sut "$t" "$t" image-host "$SOAK_WORKERS" http; done
    for t in $SOAK_TARGETS; do
        log "soak: warming $t"
        imagehost_note "warm" "$t" "$(python3 "$BENCH/imagehost.py" warm --base "${SUT_BASE[$t]}" --dir "$RUN_DIR/imagehost")"
    done
    # Sampler: every SOAK_SAMPLE s, RSS, PSS and open fds of each target (all its processes).
    (
        t0=$SECONDS
        while :; do
            for t in $SOAK_TARGETS; do
                mapfile -t pids < <(sut_pids "$t")
                printf '{"kind":"soak_sample","target":"%s","t_s":%d,"rss_kib":%d,"pss_kib":%d,"fds":%d}\n' \
                    "$t" $((SECONDS - t0)) "$(status_kib VmRSS "${pids[@]}")" "$(pss_kib "${pids[@]}")" "$(fd_count "${pids[@]}")"
            done
            sleep "$SOAK_SAMPLE"
        done
    ) >"$sampler_out" &
    local sampler=$!
    PIDS+=("$sampler")
    start_t=$SECONDS
    log "soak: ${SOAK_DURATION}s of the image-host mix, ${SOAK_CONNECTIONS} connections each pacing ${SOAK_DELAY_MS} ms, against: $SOAK_TARGETS"
    while ((SECONDS - start_t < SOAK_DURATION)); do
        left=$((SOAK_DURATION - (SECONDS - start_t)))
        secs=$((left < SOAK_SLICE ? left : SOAK_SLICE))
        slice_no=$((slice_no + 1))
        local cpids=()
        for t in $SOAK_TARGETS; do
            out="$RUN_DIR/soak-$t-$slice_no.txt"
            IMAGEHOST_TABLE="$RUN_DIR/imagehost/table.txt" IMAGEHOST_NONCE="soak$slice_no" IMAGEHOST_DELAY_MS="$SOAK_DELAY_MS" \
                timeout -k 5 $((secs + 30)) wrk -t1 -c"$SOAK_CONNECTIONS" -d"$secs"s --latency \
                -s "$ROOT/loadtest/scenarios/image-host.lua" "${SUT_BASE[$t]}/" >"$out" 2>&1 &
            cpids+=($!)
        done
        for p in "${cpids[@]}"; do wait "$p" || true; done
        now=$((SECONDS - start_t))
        for t in $SOAK_TARGETS; do
            python3 "$REPORT" record --client wrk --out-file "$RUN_DIR/soak-$t-$slice_no.txt" --scenario soak \
                --target "$t" --size mix --workers "$SOAK_WORKERS" --round "$slice_no" --duration "$secs" \
                --clk-tck "$CLK_TCK" --sut-ticks 0 --origin-ticks 0 --machine-ticks 0 --softirq-ticks 0 \
                --quiet-busy-pct 0 --quiet-waited 0 --wrk-cpu-ms 0 --rss-kib 0 --t-end "$now" >>"$RUNS"
            python3 "$REPORT" line "$RUNS" >&2
        done
    done
    stop_pid "$sampler"; forget_pid "$sampler"
    cat "$sampler_out" >>"$RUNS"
    for t in $SOAK_TARGETS; do
        imagehost_note "sample_after_soak" "$t" "$(python3 "$BENCH/imagehost.py" sample --base "${SUT_BASE[$t]}" --dir "$RUN_DIR/imagehost" --n 1000 --nonce soakend)"
    done
    stop_suts soak
}

# ---------------------------------------------------------------- main
log "run dir $RUN_DIR"
CLK_TCK=$(getconf CLK_TCK)
start_origin origin "$ORIGIN_THREADS"
ORIGIN_PIDS=("$ORIGIN_LAST_PID")
MAIN_ORIGIN=$ORIGIN_ADDR
start_origin origin2 1; ORIGIN2_ADDR=$ORIGIN_ADDR
start_origin origin3 1; ORIGIN3_ADDR=$ORIGIN_ADDR
ORIGIN_ADDR=$MAIN_ORIGIN
log "origin $ORIGIN_ADDR ($ORIGIN_THREADS threads); idle tiers 2 and 3: $ORIGIN2_ADDR $ORIGIN3_ADDR"

mkdir -p "$RUN_DIR/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$RUN_DIR/tls/key.pem" -out "$RUN_DIR/tls/cert.pem" 2>"$RUN_DIR/tls/openssl.log" ||
    { cat "$RUN_DIR/tls/openssl.log" >&2; exit 1; }
chmod 644 "$RUN_DIR/tls/key.pem"

IMAGEHOST_FIGURES="{}"
if [[ $SOAK == 1 || " $SCENARIOS " == *" image-host "* ]]; then
    IMAGEHOST_FIGURES=$(python3 "$BENCH/imagehost.py" gen --out "$RUN_DIR/imagehost" --images "$IMAGES" --zipf "$ZIPF" --miss "$MISS")
    log "image-host workload: $IMAGEHOST_FIGURES"
fi

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
WEIR_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$ROOT" && git status --porcelain -- proxy plugins Cargo.toml 2>/dev/null) ]]; then
    WEIR_REV="$WEIR_REV+dirty"
fi
OHA_VERSION=$(command -v oha >/dev/null 2>&1 && oha --version 2>/dev/null | head -1 || echo "oha: none")
python3 "$REPORT" meta \
    "suite=$([[ $SOAK == 1 ]] && echo soak || echo suite)" \
    "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "nproc=$(nproc)" "cpu_model=$CPU_MODEL" "kernel=$(uname -r)" \
    "mem_total_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)" \
    "weir_rev=$WEIR_REV" "nginx_version=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')" \
    "wrk_version=$(wrk -v 2>&1 | head -1 | awk '{print $2}')" "oha_version=$OHA_VERSION" \
    "scenarios=$SCENARIOS" "workers=$WORKERS" "duration=$DURATION" "rounds=$ROUNDS" \
    "connections=$CONNECTIONS" "warmup=$WARMUP" "origin_threads=$ORIGIN_THREADS" \
    "h2_conns=$H2_CONNS" "h2_streams=$H2_STREAMS" "idle_hold=$IDLE_HOLD" "stream_rate=$STREAM_RATE" \
    "soak_duration=$SOAK_DURATION" "soak_slice=$SOAK_SLICE" "soak_connections=$SOAK_CONNECTIONS" \
    "soak_delay_ms=$SOAK_DELAY_MS" "soak_sample=$SOAK_SAMPLE" "soak_workers=$SOAK_WORKERS" "soak_targets=$SOAK_TARGETS" \
    "quiet_max_pct=$QUIET_MAX_PCT" "quiet_wait=$QUIET_WAIT" "clk_tck=$CLK_TCK" "imagehost_memory=$IMAGEHOST_MEMORY" \
    "image_host_workload=$IMAGEHOST_FIGURES" >"$RUN_DIR/meta.json"

if [[ $SOAK == 1 ]]; then
    soak
else
    for w in $WORKERS; do
        for sc in $SCENARIOS; do
            case $sc in
                idle-*) idle "$sc" "$w" ;;
                stream-*) stream "$sc" "$w" ;;
                *) throughput "$sc" "$w" ;;
            esac
        done
    done
fi
if ((${#SKIPPED[@]})); then
    python3 "$REPORT" meta-add "$RUN_DIR/meta.json" "skipped=$(IFS=';'; echo "${SKIPPED[*]}")"
fi

FINISHED=1
finalize
