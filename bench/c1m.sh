#!/usr/bin/env bash
# C1M on one host: brings up a one-host cluster (a redis-server, one router,
# NODES corecast-server nodes of one shard each, every node its own ports
# and a connection ceiling under the 20,000-files-per-process limit), then
# drives it the way clients would, taking endpoints from the router's
# GET /v1/dispatch:
#   1. connect: CONNS authenticated connections, held HOLD_S seconds, with
#      the nodes' RSS summed before and while held (user-space bytes per
#      connection) and the kernel's socket slab;
#   2. broadcast: CONNS connections, one POST /v1/admin/broadcast on the
#      router, time until the last connection has it and how many got it;
#   3. fanout: rooms of ROOM_SIZE at RATE messages/s per room.
# Every process stops by itself: the script kills what it started on exit.
#
#   bench/c1m.sh            # the real thing: 1,000,000 connections over 56 nodes (release build)
#   bench/c1m.sh --ci       # a few thousand over 3 nodes, for CI (debug build)
#   NODES=10 CONNS=150000 HOLD_S=60 bench/c1m.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--ci" ]; then
    NODES=${NODES:-3} CONNS=${CONNS:-3000} HOLD_S=${HOLD_S:-2} ROOM_SIZE=${ROOM_SIZE:-500} RATE=${RATE:-5}
    FANOUT_S=${FANOUT_S:-2} BIN=${BIN:-target/debug}
fi
NODES=${NODES:-56}
CONNS=${CONNS:-1000000}
HOLD_S=${HOLD_S:-60}
ROOM_SIZE=${ROOM_SIZE:-10000}
RATE=${RATE:-0.05}
FANOUT_S=${FANOUT_S:-10}
CEILING=${CEILING:-19000}
BASE_PORT=${BASE_PORT:-23000}
BIN=${BIN:-target/release}
SECRET=${CORECAST_JWT_SECRET:-c1m-secret-0123456789abcdef}
KEY=${CORECAST_ADMIN_KEY:-c1m-admin-key-0123456789abcdef}
export CORECAST_JWT_SECRET=$SECRET CORECAST_ADMIN_KEY=$KEY CORECAST_ROUTER_ADMIN_KEY=$KEY RUST_LOG=${RUST_LOG:-warn}

for bin in corecast-server corecast-router corecast-bench; do
    [ -x "$BIN/$bin" ] || { echo "c1m: $BIN/$bin is missing: cargo build --release (or BIN=target/debug)" >&2; exit 2; }
done
command -v redis-server >/dev/null || { echo "c1m: redis-server is missing (apt-get install -y redis-server)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/corecast-c1m.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

REDIS_PORT=$BASE_PORT
ROUTER_LINK=$((BASE_PORT + 1)) ROUTER_HTTP=$((BASE_PORT + 2)) ROUTER_ADMIN=$((BASE_PORT + 3))
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
sleep 0.5
"$BIN/corecast-router" --router-id r1 --redis "redis://127.0.0.1:$REDIS_PORT/" --store embedded \
    --data-dir "$WORK/router" --link-listen "127.0.0.1:$ROUTER_LINK" --http-listen "127.0.0.1:$ROUTER_HTTP" \
    --admin-listen "127.0.0.1:$ROUTER_ADMIN" --health-pull-ms 1000 >"$WORK/router.log" 2>&1 &
PIDS+=($!)

NODE_PIDS=()
for i in $(seq 0 $((NODES - 1))); do
    p=$((BASE_PORT + 10 + i * 4))
    "$BIN/corecast-server" --node-id "n$i" --redis "redis://127.0.0.1:$REDIS_PORT/" --shards 1 --pin-threads false \
        --listen "127.0.0.1:$p" --ws-listen "127.0.0.1:$((p + 1))" --web-listen "127.0.0.1:$((p + 2))" \
        --control-listen "127.0.0.1:$((p + 3))" --max-connections "$CEILING" --data-dir "$WORK/n$i" \
        --connect-rate-per-source 0 --connect-rate-total 0 --max-unauthenticated 1000000 --auth-rate-per-sec 0 \
        --publish-rate-per-sec 0 --publish-bytes-per-sec 0 >"$WORK/n$i.log" 2>&1 &
    PIDS+=($!)
    NODE_PIDS+=($!)
done

# GET over bash's /dev/tcp, so the script needs no HTTP client.
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    cat <&3
    exec 3<&-
}
dispatched() { http_get "$ROUTER_HTTP" /v1/dispatch 2>/dev/null | grep -o '"node":' | wc -l; }
for _ in $(seq 1 120); do
    [ "$(dispatched)" -ge "$NODES" ] && break
    sleep 0.5
done
[ "$(dispatched)" -ge "$NODES" ] || { echo "c1m: dispatch never listed $NODES nodes" >&2; tail -5 "$WORK"/*.log >&2; exit 1; }
echo "c1m: cluster up: redis, 1 router, $NODES nodes; dispatch lists them all"

rss_kb() { local t=0; for pid in "${NODE_PIDS[@]}"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status"))); done; echo "$t"; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }

# One harness worker per node (worker w connects to node w of the dispatch
# answer), each under the harness's 18,000 sockets per process.
WORKERS=$NODES
if [ $(( (CONNS + NODES - 1) / NODES )) -gt 18000 ] || [ $(( (CONNS + NODES - 1) / NODES )) -gt "$CEILING" ]; then
    echo "c1m: $CONNS connections need more than $NODES nodes (at most 18,000 per node and worker)" >&2
    exit 2
fi
COMMON=(--dispatch "http://127.0.0.1:$ROUTER_HTTP/v1/dispatch" --control "127.0.0.1:$ROUTER_ADMIN"
        --workers "$WORKERS" --max-run-s 1800 --connect-concurrency "${CONCURRENCY:-200}"
        --connect-timeout-ms 60000 --heartbeat-ms 30000)

echo "c1m: 1. connect $CONNS, hold ${HOLD_S}s"
rss0=$(rss_kb) slab0=$(slab_kb)
"$BIN/corecast-bench" connect --connections "$CONNS" --hold-s "$HOLD_S" "${COMMON[@]}" --json >"$WORK/connect.json" &
BENCH=$!
# Once every connection is up (the nodes' /health counts), sample memory.
online() {
    local t=0
    for i in $(seq 0 $((NODES - 1))); do
        c=$(http_get $((BASE_PORT + 13 + i * 4)) /health 2>/dev/null | grep -o '"connections":[0-9]*' | cut -d: -f2)
        t=$((t + ${c:-0}))
    done
    echo "$t"
}
while kill -0 "$BENCH" 2>/dev/null; do
    sleep 1
    if [ -z "${rss1:-}" ] && [ "$(online)" -ge "$CONNS" ]; then rss1=$(rss_kb) slab1=$(slab_kb); fi
done
wait "$BENCH"
cat "$WORK/connect.json"
if [ -n "${rss1:-}" ]; then
    echo "c1m: nodes' RSS $rss0 -> $rss1 kB: $(( (rss1 - rss0) * 1024 / CONNS )) user-space bytes per connection"
    echo "c1m: kernel slab $slab0 -> $slab1 kB: $(( (slab1 - slab0) * 1024 / CONNS )) bytes per connection (both socket ends, and the harness's)"
fi

echo "c1m: 2. broadcast to $CONNS"
"$BIN/corecast-bench" broadcast --connections "$CONNS" --timeout-s 120 "${COMMON[@]}" --json | tee "$WORK/broadcast.json"

ROOMS=$(( CONNS / ROOM_SIZE )); [ "$ROOMS" -lt 1 ] && ROOMS=1
echo "c1m: 3. fanout: $ROOMS rooms of $ROOM_SIZE at $RATE msg/s"
"$BIN/corecast-bench" fanout --rooms "$ROOMS" --members "$ROOM_SIZE" --publishers "$ROOMS" --rate "$RATE" \
    --warmup-s 1 --duration-s "$FANOUT_S" --drain-s "${DRAIN_S:-30}" "${COMMON[@]}" --json | tee "$WORK/fanout.json"

fail=0
for f in connect broadcast fanout; do
    grep -q '"failed":{}' "$WORK/$f.json" || { echo "c1m: $f had failed connections" >&2; fail=1; }
done
grep -q '"lost":0' "$WORK/broadcast.json" || { echo "c1m: the broadcast did not reach every connection" >&2; fail=1; }
grep -q '"lost":0' "$WORK/fanout.json" || { echo "c1m: fan-out lost messages" >&2; fail=1; }
[ "$fail" -eq 0 ] && echo "c1m: ok"
exit "$fail"
