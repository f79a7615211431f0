#!/usr/bin/env bash
# Room fan-out, two corecast-server builds side by side in one run:
# deliveries per server CPU-second and delivery latency.
#
#   bench/fanout-ab.sh BEFORE_SERVER_BIN AFTER_SERVER_BIN
#
# For ROUNDS rounds it runs both builds, alternating which goes first: a
# fresh node (--shards $SHARDS, rate limits off) pinned to $SERVER_CPUS,
# the same `corecast-bench fanout` workload pinned to CPU $HARNESS_CPU, then
# stops the server. With SHARDS=2 the room's members land on both shards,
# so every message also crosses between them. It prints one Markdown row
# per run and exits non-zero if any run failed or lost a delivery.
#
# Knobs (environment):
#   MEMBERS=10000 RATE=5 PAYLOAD=100 WARMUP=2 DURATION=5 DRAIN=2 ROUNDS=3 SHARDS=1
#   SERVER_CPUS=0 HARNESS_CPU=1   (with SHARDS=2 use SERVER_CPUS=0,1)
#   BENCH_BIN=path   the harness (default: target/release/corecast-bench, built if missing)
#   OUT=dir          results and logs (default: a new /tmp dir)
set -euo pipefail

MEMBERS=${MEMBERS:-10000}
RATE=${RATE:-5}
PAYLOAD=${PAYLOAD:-100}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-5}
DRAIN=${DRAIN:-2}
ROUNDS=${ROUNDS:-3}
SHARDS=${SHARDS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
HARNESS_CPU=${HARNESS_CPU:-1}

if [ $# -ne 2 ]; then
    echo "usage: $0 BEFORE_SERVER_BIN AFTER_SERVER_BIN" >&2
    exit 2
fi
declare -A server_bin=([before]=$1 [after]=$2)
repo=$(cd "$(dirname "$0")/.." && pwd)
bench_bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/corecast-bench}
if [ ! -x "$bench_bin" ]; then
    cargo build --release -p corecast-bench >&2
fi
out=${OUT:-$(mktemp -d /tmp/corecast-fanout-ab.XXXXXX)}
mkdir -p "$out"
export CORECAST_JWT_SECRET=fanout-ab-secret-0123456789abcdef
export CORECAST_ADMIN_KEY=fanout-ab-admin-key-0123456789
server_pid=""
trap '[ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null; true' EXIT

# Port helpers shared by the bench scripts.
source "$repo/bench/ports.sh"

# run BUILD ROUND: one server start, one bench run, results in $out/BUILD-ROUND.json
run() {
    local build=$1 round=$2
    local port control ws web data
    port=$(free_port); control=$(free_port); ws=$(free_port); web=$(free_port)
    data=$(mktemp -d "$out/data.XXXXXX")
    taskset -c "$SERVER_CPUS" "${server_bin[$build]}" --listen "127.0.0.1:$port" --control-listen "127.0.0.1:$control" \
        --ws-listen "127.0.0.1:$ws" --web-listen "127.0.0.1:$web" --shards "$SHARDS" --data-dir "$data" \
        --connect-rate-per-source 0 --connect-rate-total 0 --auth-rate-per-sec 0 \
        --publish-rate-per-sec 0 --publish-bytes-per-sec 0 >"$out/$build-$round.log" 2>&1 &
    server_pid=$!
    wait_port "$port"
    wait_port "$control"
    local status=0
    timeout 300 taskset -c "$HARNESS_CPU" "$bench_bin" fanout --target corecast --addr "127.0.0.1:$port" \
        --control "127.0.0.1:$control" --server-pid "$server_pid" --rooms 1 --members "$MEMBERS" --publishers 1 \
        --rate "$RATE" --payload "$PAYLOAD" --warmup-s "$WARMUP" --duration-s "$DURATION" --drain-s "$DRAIN" \
        --json >"$out/$build-$round.json" 2>>"$out/$build-$round.log" || status=$?
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    rm -rf "$data"
    return $status
}

failed=0
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
    for build in $order; do
        echo "== round $round: $build" >&2
        run "$build" "$round" || { echo "run $build-$round failed (see $out/$build-$round.log)" >&2; failed=1; }
    done
done

echo
echo "| round | build | deliveries / server CPU-s | deliveries/s | latency p50 ms | p99 ms | server CPU s | lost |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    for build in before after; do
        f=$out/$build-$round.json
        [ -s "$f" ] || { echo "| $round | $build | (no result) |"; failed=1; continue; }
        python3 - "$f" "$round" "$build" <<'PY' || failed=1
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
lat = r.get("latency_us") or {}
ms = lambda k: "-" if k not in lat else f"{lat[k] / 1000:.1f}"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['deliveries_per_server_cpu_s']:.0f} | {r.get('deliveries_per_s', 0):.0f} | "
      f"{ms('p50')} | {ms('p99')} | {r.get('server_cpu_s') or 0:.2f} | {r.get('lost')} |")
sys.exit(1 if r.get("lost") else 0)
PY
    done
done
echo
echo "results in $out" >&2
exit $failed
