#!/usr/bin/env bash
# A corecast cluster on this machine, for trying one: a redis-server on a
# free port (route table, registry and the routers' message store, with
# appendfsync always), two routers (r1, r2) on that Redis store, and three
# server nodes (node-1..3) linked to both, each started from its file in
# examples/local-cluster/. Prints the dispatch URL, a token for the user
# "dev", the admin key and the demo page once dispatch lists all three
# nodes; Ctrl-C (or SIGTERM) stops every process it started and removes
# their data. If one of them exits by itself, the rest are stopped too and
# the script exits 1.
#
#   scripts/local-cluster.sh                    # builds the binaries (debug) and starts
#   scripts/local-cluster.sh --base-port 17100  # another port layout (see below)
#   scripts/local-cluster.sh --bin-dir target/release   # binaries already built
#
# Ports, from the base port B (default 7100): node-i listens on B+10(i-1)
# (TCP clients), +1 (WebSocket), +2 (demo page, HTTP), +3 (control plane);
# router r1 on B+100 (links), B+101 (dispatch, /health), B+102 (admin API,
# /metrics), r2 on B+110..B+112; Redis on the first free port from B+300.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=7100
BIN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --base-port) BASE=$2; shift 2 ;;
        --bin-dir) BIN=$2; shift 2 ;;
        -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "local-cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v redis-server >/dev/null || { echo "local-cluster: redis-server is missing (apt-get install -y redis-server)" >&2; exit 2; }
if [ -z "$BIN" ]; then
    cargo build -p corecast-server -p corecast-router
    BIN=target/debug
fi
for bin in corecast-server corecast-router; do
    [ -x "$BIN/$bin" ] || { echo "local-cluster: $BIN/$bin is missing" >&2; exit 2; }
done

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
node_port() { echo $((BASE + 10 * ($1 - 1))); }
router_port() { echo $((BASE + 100 + 10 * ($1 - 1))); }
for port in $(seq "$BASE" $((BASE + 23))) $(seq $((BASE + 100)) $((BASE + 112))); do
    if listening "$port"; then
        echo "local-cluster: port $port is in use; pick another layout with --base-port" >&2
        exit 2
    fi
done
REDIS_PORT=$((BASE + 300))
while listening "$REDIS_PORT"; do REDIS_PORT=$((REDIS_PORT + 1)); done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
export CORECAST_JWT_SECRET=${CORECAST_JWT_SECRET:-$(secret)}
export CORECAST_ADMIN_KEY=${CORECAST_ADMIN_KEY:-$(secret)}
export CORECAST_ROUTER_ADMIN_KEY=$CORECAST_ADMIN_KEY
export CORECAST_ROUTER_STORE_REDIS_URL=$REDIS_URL
export RUST_LOG=${RUST_LOG:-info}

WORK=$(mktemp -d /tmp/corecast-local-cluster.XXXXXX)
PIDS=()
stopped=0
stop() {
    [ "$stopped" = 1 ] && return
    stopped=1
    echo "local-cluster: stopping ${#PIDS[@]} processes"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 100); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    echo "local-cluster: stopped"
}
trap stop EXIT
trap 'exit 0' INT TERM

# start NAME COMMAND...: runs it in the background, its output in $WORK/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    echo "started $name pid $!"
}

start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always --dir "$WORK"
for _ in $(seq 100); do listening "$REDIS_PORT" && break; sleep 0.05; done
listening "$REDIS_PORT" || { echo "local-cluster: redis-server did not start; $WORK/redis.log:" >&2; cat "$WORK/redis.log" >&2; exit 1; }

for r in 1 2; do
    p=$(router_port $r)
    start "router-$r" "$BIN/corecast-router" --config "examples/local-cluster/router-$r.toml" --redis "$REDIS_URL" \
        --link-listen "127.0.0.1:$p" --http-listen "127.0.0.1:$((p + 1))" --admin-listen "127.0.0.1:$((p + 2))"
done
for n in 1 2 3; do
    p=$(node_port $n)
    start "node-$n" "$BIN/corecast-server" --config "examples/local-cluster/node-$n.toml" --redis "$REDIS_URL" \
        --listen "127.0.0.1:$p" --ws-listen "127.0.0.1:$((p + 1))" --web-listen "127.0.0.1:$((p + 2))" \
        --control-listen "127.0.0.1:$((p + 3))" --data-dir "$WORK/node-$n"
done

# GET over bash's /dev/tcp, so the script needs no HTTP client.
http_get() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    cat <&3
    exec 3<&-
}
DISPATCH_PORT=$(($(router_port 1) + 1))
ready=0
for _ in $(seq 600); do
    answer=$(http_get "$DISPATCH_PORT" /v1/dispatch 2>/dev/null || true)
    if [ "$(grep -o '"node":"node-' <<<"$answer" | wc -l)" -eq 3 ]; then ready=1; break; fi
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { echo "local-cluster: a process exited at start; logs in $WORK:" >&2; tail -n 5 "$WORK"/*.log >&2; exit 1; }
    done
    sleep 0.1
done
[ "$ready" = 1 ] || { echo "local-cluster: dispatch did not list 3 nodes within 60 s; logs in $WORK" >&2; exit 1; }

TOKEN=$("$BIN/corecast-server" --config examples/local-cluster/node-1.toml token dev --ttl-secs 86400)
cat <<INFO
local cluster ready: 2 routers, 3 nodes, Redis on 127.0.0.1:$REDIS_PORT
  dispatch:   http://127.0.0.1:$DISPATCH_PORT/v1/dispatch   (r2: http://127.0.0.1:$(($(router_port 2) + 1))/v1/dispatch)
  admin API:  http://127.0.0.1:$(($(router_port 1) + 2))/v1/admin/...   with  Authorization: Bearer \$KEY
  admin key:  $CORECAST_ADMIN_KEY
  dev token:  $TOKEN   (user "dev", 24 h)
  demo page:  http://127.0.0.1:$(($(node_port 1) + 2))/demo
  logs:       $WORK/*.log
Ctrl-C stops everything.
INFO

# Until Ctrl-C, or until one process exits by itself.
set +e
wait -n "${PIDS[@]}"
echo "local-cluster: a process exited by itself; stopping the others. Last log lines:" >&2
tail -n 5 "$WORK"/*.log >&2
exit 1
