#!/usr/bin/env bash
# C1M on one host: brings up a one-host cluster (a redis-server, one router,
# NODES corecast-server nodes of one shard each, every node its own ports
# and a connection ceiling under the 20,000-files-per-process limit), then
# runs `corecast-bench c1m`, which connects CONNS clients once, the way
# clients would (endpoints from the router's GET /v1/dispatch), and runs
# every step on those same connections:
#   1. connect: CONNS authenticated connections (members of rooms of
#      ROOM_SIZE, one publisher per room), heart-beating from their AUTH_OK;
#   2. hold: HOLD_S seconds; half-way the nodes' RSS and the kernel's socket
#      memory are sampled: bytes per connection actually held;
#   3. broadcast: one POST /v1/admin/broadcast on the router, time until
#      the last connection has it;
#   4. fanout: every room publishes RATE messages/s for FANOUT_S seconds;
#      the drain ends as soon as every expected delivery arrived.
# Any connection that fails, is refused or is closed by a server, any
# broadcast or fan-out delivery lost, makes the script exit non-zero with
# the counts by reason. stdout: progress and one table per step; the full
# JSON (c1m.json, with the per-second time series) and report.html (SVG
# charts, viewable offline) go to OUT, whose path is printed.
# Every process stops by itself: the script kills what it started on exit.
#
#   bench/c1m.sh            # the real thing: 1,000,000 connections over 56 nodes (release build)
#   bench/c1m.sh --ci       # a few thousand over 3 nodes, for CI (debug build)
#   NODES=10 CONNS=150000 HOLD_S=60 bench/c1m.sh
#
# Binaries: BIN (default $CARGO_TARGET_DIR or target, then release, or debug
# with --ci); what is missing there is built first. Other knobs: ROOM_SIZE,
# RATE (messages/s per room), FANOUT_S, DRAIN_S (most seconds of drain),
# CEILING (connections per node), BASE_PORT, CONCURRENCY (connects in flight
# per worker), OUT, NODE_ARGS (extra corecast-server arguments) and
# NO_HEARTBEAT=1 (the harness sends none: with a short --idle-timeout-ms in
# NODE_ARGS the servers close connections, and the run must fail).
set -euo pipefail
# Paths given relative to where the script was started from.
[ -n "${BIN:-}" ] && BIN=$(realpath -m "$BIN")
[ -n "${OUT:-}" ] && OUT=$(realpath -m "$OUT")
[ -n "${CARGO_TARGET_DIR:-}" ] && export CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR")
cd "$(dirname "$0")/.."

PROFILE=release
if [ "${1:-}" = "--ci" ]; then
    NODES=${NODES:-3} CONNS=${CONNS:-3000} HOLD_S=${HOLD_S:-2} ROOM_SIZE=${ROOM_SIZE:-500} RATE=${RATE:-5}
    FANOUT_S=${FANOUT_S:-2} DRAIN_S=${DRAIN_S:-10} PROFILE=debug
fi
NODES=${NODES:-56}
CONNS=${CONNS:-1000000}
HOLD_S=${HOLD_S:-60}
ROOM_SIZE=${ROOM_SIZE:-10000}
RATE=${RATE:-0.05}
FANOUT_S=${FANOUT_S:-10}
DRAIN_S=${DRAIN_S:-30}
CEILING=${CEILING:-19000}
BASE_PORT=${BASE_PORT:-23000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${BIN:-$TARGET_DIR/$PROFILE}
OUT=${OUT:-$(mktemp -d /tmp/corecast-c1m-results.XXXXXX)}
SECRET=${CORECAST_JWT_SECRET:-c1m-secret-0123456789abcdef}
KEY=${CORECAST_ADMIN_KEY:-c1m-admin-key-0123456789abcdef}
export CORECAST_JWT_SECRET=$SECRET CORECAST_ADMIN_KEY=$KEY CORECAST_ROUTER_ADMIN_KEY=$KEY RUST_LOG=${RUST_LOG:-warn}
read -r -a EXTRA_NODE_ARGS <<<"${NODE_ARGS:-}"

missing=()
for bin in corecast-server corecast-router corecast-bench; do
    [ -x "$BIN/$bin" ] || missing+=(-p "$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(realpath -m "$BIN")" != "$(realpath -m "$TARGET_DIR/$PROFILE")" ]; then
        echo "c1m: BIN=$BIN lacks ${missing[*]} and is not cargo's $TARGET_DIR/$PROFILE to build into" >&2
        exit 2
    fi
    flags=()
    [ "$PROFILE" = release ] && flags+=(--release)
    echo "c1m: building ${missing[*]} ($PROFILE) into $TARGET_DIR"
    CARGO_TARGET_DIR=$TARGET_DIR cargo build "${flags[@]}" "${missing[@]}"
fi
command -v redis-server >/dev/null || { echo "c1m: redis-server is missing (apt-get install -y redis-server)" >&2; exit 2; }
if [ $(((CONNS + NODES - 1) / NODES)) -gt 18000 ] || [ $(((CONNS + NODES - 1) / NODES)) -gt "$CEILING" ]; then
    echo "c1m: $CONNS connections need more than $NODES nodes (at most 18,000 per node and worker)" >&2
    exit 2
fi

WORK=$(mktemp -d /tmp/corecast-c1m.XXXXXX)
PIDS=()
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # A failed run keeps the servers' logs beside its results.
    if [ "$status" -ne 0 ] && [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
        mkdir -p "$OUT/logs" && cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
        echo "c1m: the servers' logs are in $OUT/logs" >&2
    fi
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

NODE_PIDS=() NODE_CONTROLS=()
for i in $(seq 0 $((NODES - 1))); do
    p=$((BASE_PORT + 10 + i * 4))
    "$BIN/corecast-server" --node-id "n$i" --redis "redis://127.0.0.1:$REDIS_PORT/" --shards 1 --pin-threads false \
        --listen "127.0.0.1:$p" --ws-listen "127.0.0.1:$((p + 1))" --web-listen "127.0.0.1:$((p + 2))" \
        --control-listen "127.0.0.1:$((p + 3))" --max-connections "$CEILING" --data-dir "$WORK/n$i" \
        --connect-rate-per-source 0 --connect-rate-total 0 --max-unauthenticated 1000000 --auth-rate-per-sec 0 \
        --publish-rate-per-sec 0 --publish-bytes-per-sec 0 "${EXTRA_NODE_ARGS[@]}" >"$WORK/n$i.log" 2>&1 &
    PIDS+=($!)
    NODE_PIDS+=($!)
    NODE_CONTROLS+=("127.0.0.1:$((p + 3))")
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
echo "c1m: cluster up: redis, 1 router, $NODES nodes ($BIN); dispatch lists them all"

join() { local IFS=,; echo "$*"; }
HEARTBEAT=()
[ "${NO_HEARTBEAT:-0}" = 1 ] && HEARTBEAT=(--no-heartbeat)
# One harness worker per node (worker w connects to node w of the dispatch
# answer), each under the harness's 18,000 sockets per process.
rc=0
"$BIN/corecast-bench" c1m --connections "$CONNS" --room-size "$ROOM_SIZE" --rate "$RATE" --hold-s "$HOLD_S" \
    --warmup-s 1 --duration-s "$FANOUT_S" --drain-s "$DRAIN_S" \
    --dispatch "http://127.0.0.1:$ROUTER_HTTP/v1/dispatch" --control "127.0.0.1:$ROUTER_ADMIN" \
    --workers "$NODES" --max-run-s 1800 --connect-concurrency "${CONCURRENCY:-200}" --connect-timeout-ms 60000 \
    --server-pid "$(join "${NODE_PIDS[@]}")" --node-control "$(join "${NODE_CONTROLS[@]}")" \
    "${HEARTBEAT[@]}" --out "$OUT" || rc=$?

for i in "${!NODE_PIDS[@]}"; do
    kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || { echo "c1m: node n$i died:" >&2; tail -5 "$WORK/n$i.log" >&2; rc=1; }
done
echo "c1m: results (c1m.json, report.html) in $OUT"
if [ "$rc" -eq 0 ]; then echo "c1m: ok"; else echo "c1m: FAILED" >&2; fi
exit "$rc"
