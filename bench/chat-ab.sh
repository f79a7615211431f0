#!/usr/bin/env bash
# Persistent chat, two corecast-server builds side by side in one run:
# throughput, SENT latency and the admin API's latency under the load.
#
#   bench/chat-ab.sh BEFORE_SERVER_BIN AFTER_SERVER_BIN
#
# For ROUNDS rounds it runs both builds, alternating which goes first: a
# fresh single node (embedded store, strict durability, --shards 1, rate
# limits off) pinned to CPU $SERVER_CPU with a new data directory, the same
# `corecast-bench chat` workload pinned to CPU $HARNESS_CPU, then stops the
# server. At the end it prints one Markdown row per run. It exits non-zero
# if any run failed, reported a server error or lost a delivery.
#
# Knobs (environment):
#   PAIRS=20 CHAT_GROUPS=2 GROUP_SIZE=10 WINDOW=4 DURATION=8 ROUNDS=3
#   SERVER_CPU=0 HARNESS_CPU=1
#   BENCH_BIN=path   the harness (default: target/release/corecast-bench, built if missing)
#   OUT=dir          results and logs (default: a new /tmp dir)
set -euo pipefail

PAIRS=${PAIRS:-20}
CHAT_GROUPS=${CHAT_GROUPS:-2}
GROUP_SIZE=${GROUP_SIZE:-10}
WINDOW=${WINDOW:-4}
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
HARNESS_CPU=${HARNESS_CPU:-1}

if [ $# -ne 2 ]; then
    echo "usage: $0 BEFORE_SERVER_BIN AFTER_SERVER_BIN" >&2
    exit 2
fi
declare -A server_bin=([before]=$1 [after]=$2)
repo=$(cd "$(dirname "$0")/.." && pwd)
bench_bin=${BENCH_BIN:-$repo/target/release/corecast-bench}
if [ ! -x "$bench_bin" ]; then
    cargo build --release -p corecast-bench >&2
fi
out=${OUT:-$(mktemp -d /tmp/corecast-chat-ab.XXXXXX)}
mkdir -p "$out"
export CORECAST_JWT_SECRET=chat-ab-secret-0123456789abcdef
export CORECAST_ADMIN_KEY=chat-ab-admin-key-0123456789
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
    taskset -c "$SERVER_CPU" "${server_bin[$build]}" --listen "127.0.0.1:$port" --control-listen "127.0.0.1:$control" \
        --ws-listen "127.0.0.1:$ws" --web-listen "127.0.0.1:$web" --shards 1 --data-dir "$data" \
        --connect-rate-per-source 0 --connect-rate-total 0 --auth-rate-per-sec 0 \
        --publish-rate-per-sec 0 --publish-bytes-per-sec 0 >"$out/$build-$round.log" 2>&1 &
    server_pid=$!
    wait_port "$port"
    wait_port "$control"
    local status=0
    timeout 120 taskset -c "$HARNESS_CPU" "$bench_bin" chat --addr "127.0.0.1:$port" --control "127.0.0.1:$control" \
        --server-pid "$server_pid" --pairs "$PAIRS" --groups "$CHAT_GROUPS" --group-size "$GROUP_SIZE" \
        --window "$WINDOW" --duration-s "$DURATION" --json >"$out/$build-$round.json" 2>>"$out/$build-$round.log" ||
        status=$?
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
echo "| round | build | stored SENDs/s | SENT p50 ms | SENT p99 ms | admin p50 ms | admin p99 ms | server CPU s | lost | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for round in $(seq 1 "$ROUNDS"); do
    for build in before after; do
        f=$out/$build-$round.json
        [ -s "$f" ] || { echo "| $round | $build | (no result) |"; failed=1; continue; }
        python3 - "$f" "$round" "$build" <<'EOF' || failed=1
import json, sys
r = json.load(open(sys.argv[1]))
ms = lambda p, k: "-" if not p else f"{p[k] / 1000:.1f}"
sent, admin = r.get("sent_latency_us"), r.get("admin_latency_us")
errors = sum(r.get("server_errors", {}).values()) + sum(r.get("failed", {}).values())
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['stored_per_s']:.0f} | {ms(sent, 'p50')} | {ms(sent, 'p99')} | "
      f"{ms(admin, 'p50')} | {ms(admin, 'p99')} | {r.get('server_cpu_s') or 0:.2f} | {r.get('lost')} | {errors} |")
sys.exit(1 if errors or r.get("lost") else 0)
EOF
    done
done
echo
echo "results in $out" >&2
exit $failed
