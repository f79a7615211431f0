#!/usr/bin/env bash
# Room streams (issue 16) on one corecast-server build, in one run:
#
#   1. Fan-out with history off and on, alternated (off, on, off, on, ...;
#      ROUNDS of each). Every run starts a fresh node with the same config
#      file: a [[rooms]] rule giving `live-*` rooms a history of
#      HISTORY_SIZE messages, and the admission and publish rate limits off.
#      "off" publishes to plain rooms (bench-room-N, which no rule matches),
#      "on" runs `fanout --history` in live-bench-room-N, where every member
#      checks that the stream positions it gets grow by one. Same workload,
#      server pinned to SERVER_CPUS, harness to HARNESS_CPU. It prints a row
#      per run, the mean fan-out deliveries per server CPU-second of each
#      mode and the ratio on / off (the claim to check: on is within 10 %
#      of off; reported, not enforced, as this machine is noisy).
#   2. The recovery storm (skipped with STORM_MEMBERS=0): a fresh node with
#      the same config, `corecast-bench recovery-storm`: STORM_MEMBERS
#      members of one history room over STORM_WORKERS worker processes, one
#      publisher at STORM_RATE msg/s; every member drops at once and rejoins
#      with JOIN since while publishing goes on. It prints the time until
#      every member has its JOINED back and has caught up.
#
# Exits non-zero when any run failed: a connection failed, was refused or
# dropped, a delivery was lost, the server dropped a frame, or (history on,
# storm) a position was out of line, a rejoin was not recovered or a member
# never caught up.
#
#   bench/history.sh
#   ROOMS=4 MEMBERS=2000 RATE=10 ROUNDS=3 STORM_MEMBERS=10000 bench/history.sh
#
# Knobs (environment):
#   ROOMS=4 MEMBERS=2000 PUBLISHERS=4 RATE=10 PAYLOAD=100 WARMUP=2 DURATION=5 DRAIN=2 ROUNDS=2
#   HISTORY_SIZE=1000 SHARDS=1 SERVER_CPUS=0 HARNESS_CPU=1 (with SHARDS=2: SERVER_CPUS=0,1)
#   STORM_MEMBERS=10000 STORM_WORKERS=2 STORM_RATE=20 STORM_BEFORE=3 STORM_AFTER=15
#   STORM_CONCURRENCY=5000 (reconnects in flight per worker: all of them at once by default)
#   BIN=dir   corecast-server and corecast-bench (default: $CARGO_TARGET_DIR or target, then
#             release; built if missing)
#   OUT=dir   results and logs (default: a new /tmp dir)
set -euo pipefail

ROOMS=${ROOMS:-4}
MEMBERS=${MEMBERS:-2000}
PUBLISHERS=${PUBLISHERS:-4}
RATE=${RATE:-10}
PAYLOAD=${PAYLOAD:-100}
WARMUP=${WARMUP:-2}
DURATION=${DURATION:-5}
DRAIN=${DRAIN:-2}
ROUNDS=${ROUNDS:-2}
HISTORY_SIZE=${HISTORY_SIZE:-1000}
SHARDS=${SHARDS:-1}
SERVER_CPUS=${SERVER_CPUS:-0}
HARNESS_CPU=${HARNESS_CPU:-1}
STORM_MEMBERS=${STORM_MEMBERS:-10000}
STORM_WORKERS=${STORM_WORKERS:-2}
STORM_RATE=${STORM_RATE:-20}
STORM_BEFORE=${STORM_BEFORE:-3}
STORM_AFTER=${STORM_AFTER:-15}
STORM_CONCURRENCY=${STORM_CONCURRENCY:-5000}
# Paths given relative to where the script was started from.
[ -n "${BIN:-}" ] && BIN=$(realpath -m "$BIN")
[ -n "${OUT:-}" ] && OUT=$(realpath -m "$OUT")
[ -n "${CARGO_TARGET_DIR:-}" ] && export CARGO_TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR")
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${BIN:-$TARGET_DIR/release}
missing=()
for bin in corecast-server corecast-bench; do
    [ -x "$BIN/$bin" ] || missing+=(-p "$bin")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(realpath -m "$BIN")" != "$(realpath -m "$TARGET_DIR/release")" ]; then
        echo "history: BIN=$BIN lacks ${missing[*]} and is not cargo's $TARGET_DIR/release to build into" >&2
        exit 2
    fi
    echo "history: building ${missing[*]} (release) into $TARGET_DIR" >&2
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release "${missing[@]}" >&2
fi
OUT=${OUT:-$(mktemp -d /tmp/corecast-history.XXXXXX)}
mkdir -p "$OUT"
export CORECAST_JWT_SECRET=history-bench-secret-0123456789abcdef
export CORECAST_ADMIN_KEY=history-bench-admin-key-0123456789

# One config for every run: only the room names tell history off from on.
cat >"$OUT/server.toml" <<EOF
connect_rate_per_source = 0
connect_rate_total = 0
max_unauthenticated = 1000000
auth_rate_per_sec = 0
publish_rate_per_sec = 0
publish_bytes_per_sec = 0

[[rooms]]
pattern = "live-*"
history_size = $HISTORY_SIZE
EOF

server_pid=""
trap '[ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null; true' EXIT

# Port helpers shared by the bench scripts.
source bench/ports.sh

# run NAME SCENARIO ARGS...: a fresh node, one bench run, results in $OUT/NAME.json
run() {
    local name=$1 scenario=$2
    shift 2
    local port control ws web data status=0
    port=$(free_port); control=$(free_port); ws=$(free_port); web=$(free_port)
    data=$(mktemp -d "$OUT/data.XXXXXX")
    echo "== $name" >&2
    taskset -c "$SERVER_CPUS" "$BIN/corecast-server" --config "$OUT/server.toml" --listen "127.0.0.1:$port" \
        --control-listen "127.0.0.1:$control" --ws-listen "127.0.0.1:$ws" --web-listen "127.0.0.1:$web" \
        --shards "$SHARDS" --data-dir "$data" >"$OUT/$name.log" 2>&1 &
    server_pid=$!
    wait_port "$port" && wait_port "$control" || { tail -5 "$OUT/$name.log" >&2; return 1; }
    timeout 600 taskset -c "$HARNESS_CPU" "$BIN/corecast-bench" "$scenario" --addr "127.0.0.1:$port" \
        --control "127.0.0.1:$control" --server-pid "$server_pid" --max-run-s 500 --json "$@" \
        >"$OUT/$name.json" 2>>"$OUT/$name.log" || status=$?
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    rm -rf "$data"
    [ "$status" -eq 0 ] || grep -E '^(FAILED|error):' "$OUT/$name.log" >&2 || true
    return "$status"
}

failed=0
fanout=(--rooms "$ROOMS" --members "$MEMBERS" --publishers "$PUBLISHERS" --rate "$RATE" --payload "$PAYLOAD"
    --warmup-s "$WARMUP" --duration-s "$DURATION" --drain-s "$DRAIN")
for round in $(seq 1 "$ROUNDS"); do
    run "off-$round" fanout "${fanout[@]}" || failed=1
    run "on-$round" fanout --history "${fanout[@]}" || failed=1
done
if [ "$STORM_MEMBERS" -gt 0 ]; then
    run storm recovery-storm --members "$STORM_MEMBERS" --rate "$STORM_RATE" --payload "$PAYLOAD" \
        --before-s "$STORM_BEFORE" --after-s "$STORM_AFTER" --drain-s 10 --workers "$STORM_WORKERS" \
        --connect-concurrency "$STORM_CONCURRENCY" || failed=1
fi

python3 - "$OUT" "$ROUNDS" "$STORM_MEMBERS" <<'PY' || failed=1
import json, os, sys
out, rounds, storm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def load(name):
    path = os.path.join(out, name + ".json")
    try:
        return json.loads(open(path).read().strip().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        return None

def ms(p, k):
    return "-" if not p or k not in p else f"{p[k] / 1000:.1f}"

def clean(r):
    """Nothing dropped, refused or lost, and nothing the run itself flagged."""
    return (r is not None and not r.get("problems") and not r.get("lost") and not r.get("server_drops")
            and not r.get("failed") and not r.get("disconnected"))

ok = True
per_mode = {"off": [], "on": []}
print("| run | history | deliveries / server CPU-s | deliveries/s | p50 ms | p99 ms | lost | position gaps / dups | verdict |")
print("|---|---|---|---|---|---|---|---|---|")
for rnd in range(1, rounds + 1):
    for mode in ("off", "on"):
        r = load(f"{mode}-{rnd}")
        if r is None:
            print(f"| {rnd} | {mode} | (no result) | | | | | | FAILED |")
            ok = False
            continue
        good = clean(r)
        ok &= good
        rate = r.get("deliveries_per_server_cpu_s")
        if rate:
            per_mode[mode].append(rate)
        lat = r.get("latency_us")
        positions = "-" if mode == "off" else f"{r.get('position_gaps')} / {r.get('position_duplicates')}"
        print(f"| {rnd} | {mode} | {rate or 0:,.0f} | {r.get('deliveries_per_s') or 0:,.0f} | {ms(lat, 'p50')} | "
              f"{ms(lat, 'p99')} | {r.get('lost')} | {positions} | {'ok' if good else 'FAILED'} |")
print()
if per_mode["off"] and per_mode["on"]:
    off = sum(per_mode["off"]) / len(per_mode["off"])
    on = sum(per_mode["on"]) / len(per_mode["on"])
    ratio = on / off
    holds = "holds" if ratio >= 0.9 else "does not hold"
    print(f"mean deliveries per server CPU-second: off {off:,.0f}, on {on:,.0f}; on / off = {ratio:.3f} "
          f"(claim, on within 10 % of off: {holds})")
if storm > 0:
    r = load("storm")
    print()
    if r is None:
        print("recovery storm: no result")
        ok = False
    else:
        good = clean(r)
        ok &= good
        rj, cu = r.get("rejoin_latency_us"), r.get("catch_up_latency_us")
        print("| members | rejoined | recovered | replayed | drop to JOINED p50 / p99 / max ms | "
              "drop to caught up p50 / p99 / max ms | all caught up after | published | lost | "
              "server CPU s, drop to all caught up | verdict |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        all_ms = r.get("time_to_all_caught_up_ms")
        print(f"| {r.get('storm_members')} | {r.get('rejoined')} | {r.get('recovered')} | {r.get('replayed')} | "
              f"{ms(rj, 'p50')} / {ms(rj, 'p99')} / {ms(rj, 'max')} | {ms(cu, 'p50')} / {ms(cu, 'p99')} / {ms(cu, 'max')} | "
              f"{'-' if all_ms is None else f'{all_ms:,.0f} ms'} | {r.get('published')} | {r.get('lost')} | "
              f"{r.get('server_cpu_s') or 0:.2f} | {'ok' if good else 'FAILED: ' + '; '.join(r.get('problems') or [])} |")
sys.exit(0 if ok else 1)
PY
echo "results in $OUT" >&2
exit $failed
