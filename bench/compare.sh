#!/usr/bin/env bash
# corecast side by side with NATS (nats-server), MQTT (Mosquitto) and Redis
# pub/sub, in one run, on this host's loopback.
#
# Installs the peers that are missing (Debian packages), builds what is
# missing of corecast (release), then for every target and scenario: starts
# a fresh server pinned to CPU $SERVER_CPU on free loopback ports, runs the
# same corecast-bench workload pinned to CPU $HARNESS_CPU, stops the server.
# At the end it prints one Markdown table per scenario with every figure per
# target and the ratio corecast / peer (`corecast-bench compare`), and
# writes $OUT/report.html: the charts of every target side by side (ramp,
# memory against connections, CPU, fan-out latency distribution), drawn
# from the per-second series each run recorded. A run in which any
# connection failed or was dropped fails (the script exits 1 at the end).
#
# Every step is bounded: servers are killed on exit (trap), each bench run
# has --max-run-s and an outer `timeout`, waits for ports give up after 10 s.
#
# Knobs (environment):
#   CONNECTIONS=5000   connect: idle authenticated connections
#   ROOMS=1 MEMBERS=2000 PUBLISHERS=1 RATE=50 PAYLOAD=100   fanout workload (RATE per publisher, or "max")
#   WARMUP=2 DURATION=5 DRAIN=2 HOLD=3   seconds
#   SCENARIOS="connect fanout"   PEERS="nats mqtt redis"
#   SERVER_CPU=0 HARNESS_CPU=1   pinning (taskset)
#   BIN=dir                      corecast-server and corecast-bench from there (default:
#                                $CARGO_TARGET_DIR or target, then release; built if missing)
#   CORECAST_SERVER_BIN=path     use this corecast-server instead
#   OUT=dir                      where results and logs go (default: a new /tmp dir)
#   MAX_RUN=300                  bound on one bench run, seconds
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-5000}
ROOMS=${ROOMS:-1}
MEMBERS=${MEMBERS:-2000}
PUBLISHERS=${PUBLISHERS:-1}
RATE=${RATE:-50}
PAYLOAD=${PAYLOAD:-100}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-5}
DRAIN=${DRAIN:-2}
HOLD=${HOLD:-3}
SCENARIOS=${SCENARIOS:-"connect fanout"}
PEERS=${PEERS:-"nats mqtt redis"}
SERVER_CPU=${SERVER_CPU:-0}
HARNESS_CPU=${HARNESS_CPU:-1}
MAX_RUN=${MAX_RUN:-300}
OUT=$(realpath -m "${OUT:-$(mktemp -d /tmp/corecast-compare.XXXXXX)}")
mkdir -p "$OUT"
# Paths given relative to where the script was started from.
[ -n "${BIN:-}" ] && BIN=$(realpath -m "$BIN")
[ -n "${CORECAST_SERVER_BIN:-}" ] && CORECAST_SERVER_BIN=$(realpath -m "$CORECAST_SERVER_BIN")
[ -n "${CARGO_TARGET_DIR:-}" ] && export CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR")
export PATH="$PATH:/usr/sbin:/sbin"

repo=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "compare: $*" >&2; }

# --- peers -----------------------------------------------------------------
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for peer in $PEERS; do
    case $peer in
        nats) command -v nats-server >/dev/null || missing+=(nats-server) ;;
        mqtt) command -v mosquitto >/dev/null || missing+=(mosquitto) ;;
        redis) command -v redis-server >/dev/null || missing+=(redis-server) ;;
        *) log "unknown peer $peer"; exit 2 ;;
    esac
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -qq "${missing[@]}" >&2 \
        || { as_root apt-get update -qq >&2 && as_root apt-get install -y -qq "${missing[@]}" >&2; }
fi

# --- corecast build ----------------------------------------------------------
cd "$repo"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
BIN=${BIN:-$target_dir/release}
server_bin=${CORECAST_SERVER_BIN:-$BIN/corecast-server}
bench_bin=$BIN/corecast-bench
build=()
[ -x "$bench_bin" ] || build+=(-p corecast-bench)
[ -x "$server_bin" ] || build+=(-p corecast-server)
if [ -n "${CORECAST_SERVER_BIN:-}" ] && [ ! -x "$server_bin" ]; then
    log "CORECAST_SERVER_BIN=$server_bin is not an executable"
    exit 2
fi
if [ ${#build[@]} -gt 0 ]; then
    if [ "$(realpath -m "$BIN")" != "$(realpath -m "$target_dir/release")" ]; then
        log "missing ${build[*]} in BIN=$BIN, which is not cargo's $target_dir/release to build into"
        exit 2
    fi
    log "building ${build[*]} (release) into $target_dir"
    CARGO_TARGET_DIR=$target_dir cargo build --release "${build[@]}" >&2
fi
export CORECAST_JWT_SECRET="compare-jwt-$(date +%s%N)-$$-secret"
export CORECAST_ADMIN_KEY="compare-admin-$(date +%s%N)-$$-key"

# --- process control -----------------------------------------------------------
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        sleep 0.5
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port helpers shared by the bench scripts.
source "$repo/bench/ports.sh"

# Starts $1 pinned to $SERVER_CPU; sets server_pid, port, extra_args.
start_server() {
    port=$(free_port)
    extra_args=()
    local logf="$OUT/server-$1.log"
    case $1 in
        corecast)
            local control
            control=$(free_port)
            # Its own working directory: a server with a message store keeps it there.
            local dir="$OUT/corecast-$port"
            mkdir -p "$dir"
            # The peers have no admission or publish rate limits; corecast's
            # are switched off so the same open-loop ramp is measured.
            (cd "$dir" && RUST_LOG=warn exec taskset -c "$SERVER_CPU" "$server_bin" --listen "127.0.0.1:$port" \
                --control-listen "127.0.0.1:$control" --shards 1 --first-cpu "$SERVER_CPU" \
                --connect-rate-per-source 0 --connect-rate-total 0 --max-unauthenticated 1000000 --auth-rate-per-sec 0 \
                --publish-rate-per-sec 0 --publish-bytes-per-sec 0 >"$logf" 2>&1) &
            extra_args=(--control "127.0.0.1:$control" --node-control "127.0.0.1:$control")
            ;;
        nats)
            taskset -c "$SERVER_CPU" nats-server -a 127.0.0.1 -p "$port" >"$logf" 2>&1 &
            ;;
        mqtt)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\n' \
                "$port" >"$OUT/mosquitto.conf"
            taskset -c "$SERVER_CPU" mosquitto -c "$OUT/mosquitto.conf" >"$logf" 2>&1 &
            ;;
        redis)
            taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --protected-mode no \
                --save '' --appendonly no --maxclients 19000 >"$logf" 2>&1 &
            ;;
    esac
    server_pid=$!
    wait_port "$port" || { log "$1 did not start, see $logf"; tail -5 "$logf" >&2; exit 1; }
}

run_scenario() {
    local target=$1 scenario=$2 args=()
    case $scenario in
        connect) args=(-n "$CONNECTIONS" --hold-s "$HOLD") ;;
        fanout) args=(--rooms "$ROOMS" --members "$MEMBERS" --publishers "$PUBLISHERS" --rate "$RATE"
                      --payload "$PAYLOAD" --warmup-s "$WARMUP" --duration-s "$DURATION" --drain-s "$DRAIN") ;;
    esac
    log "$target $scenario"
    if ! timeout --kill-after=10 $((MAX_RUN + 60)) taskset -c "$HARNESS_CPU" "$bench_bin" "$scenario" \
        --target "$target" --addr "127.0.0.1:$port" --server-pid "$server_pid" --max-run-s "$MAX_RUN" \
        --json "${extra_args[@]}" "${args[@]}" >"$OUT/$target-$scenario.json" 2>"$OUT/$target-$scenario.log"; then
        failed_runs+=("$target $scenario")
        log "$target $scenario failed, see $OUT/$target-$scenario.log"
        grep -E '^(FAILED|error):' "$OUT/$target-$scenario.log" >&2 || tail -3 "$OUT/$target-$scenario.log" >&2
    fi
    # A failed run's figures still go into the table and the report, marked by its problems.
    cat "$OUT/$target-$scenario.json" >>"$OUT/results.jsonl"
}

: >"$OUT/results.jsonl"
failed_runs=()
for target in corecast $PEERS; do
    for scenario in $SCENARIOS; do
        start_server "$target"
        run_scenario "$target" "$scenario"
        cleanup
        sleep 1
    done
done

# --- table ------------------------------------------------------------------
{
    echo "## corecast vs $PEERS ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "- host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), kernel $(uname -r)," \
        "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "- servers pinned to CPU $SERVER_CPU, harness to CPU $HARNESS_CPU; corecast --shards 1, its admission and publish rate limits off"
    echo "- peers: $(nats-server --version 2>/dev/null || true); mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}' || true);" \
        "$(redis-server --version 2>/dev/null | awk '{print $3}' || true)"
    echo "- connect: $CONNECTIONS connections, hold $HOLD s"
    echo "- fanout: $ROOMS room(s) x $MEMBERS members, $PUBLISHERS publisher(s) at $RATE msg/s each, $PAYLOAD-byte" \
        "payload, warm-up $WARMUP s, window $DURATION s"
    "$bench_bin" compare "$OUT/results.jsonl"
    echo
    echo "Ratios are corecast / peer: above 1 is better for rates and deliveries per CPU-second, below 1 is better"
    echo "for latency and bytes per connection."
} | tee "$OUT/table.md"
"$bench_bin" report --title "corecast vs $PEERS" -o "$OUT/report.html" "$OUT/results.jsonl" >&2
log "results in $OUT; charts in $OUT/report.html"
if [ ${#failed_runs[@]} -gt 0 ]; then
    log "FAILED: ${failed_runs[*]}"
    exit 1
fi
