#!/usr/bin/env bash
# Governance overhead, same machine, same run, N repetitions: Sluice with no
# governance (auth: none) against Sluice with keys + RPM + TPM + a budget +
# the usage log, once with `store: memory` and once with `store: redis`.
# Each Sluice runs one worker pinned to core 0; mock, Redis and the load
# generator share core 1.
# Usage: perf/bench-governance.sh [duration=10s] [connections=32] [reps=3] [body=perf/scenarios/chat-1k.json]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}; CONNS=${2:-32}; REPS=${3:-3}; BODY=${4:-perf/scenarios/chat-1k.json}
. perf/setup.sh
command -v redis-server >/dev/null || { echo "needs redis-server (scripts/setup.sh installs it)" >&2; exit 1; }
REDIS=$(port); MEM=$(port); MEM_ADMIN=$(port); RED=$(port); RED_ADMIN=$(port)
taskset -c 1 redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & RPID=$!
common() {  # $1 listen, $2 admin
  head_yaml "$1" "$2"
  printf 'models:\n  demo: { targets: [ { provider: mock, model: demo } ] }\n'
}
governed() {  # $1 listen, $2 admin, $3 store line, $4 usage log path
  common "$1" "$2"
  keys_yaml yes
  printf 'usage_log: { path: %s, fsync: interval }\n%s\n' "$4" "$3"
}
{ common "$GW" "$ADMIN"; echo "auth: none"; } > "$CFG"
MCFG="$OUT/memory.yaml"; RCFG="$OUT/redis.yaml"
governed "$MEM" "$MEM_ADMIN" "store: { kind: memory }" "$OUT/usage-memory.jsonl" > "$MCFG"
governed "$RED" "$RED_ADMIN" "store: { kind: redis, url: \"redis://127.0.0.1:$REDIS/\" }" "$OUT/usage-redis.jsonl" > "$RCFG"
taskset -c 1 $BIN/sluice-mock --listen 127.0.0.1:$MOCK --threads 1 >/dev/null & MPID=$!
taskset -c 0 $BIN/sluice --config "$CFG" 2>/dev/null & GPID=$!
taskset -c 0 $BIN/sluice --config "$MCFG" 2>/dev/null & P1=$!
taskset -c 0 $BIN/sluice --config "$RCFG" 2>/dev/null & P2=$!
trap 'kill $MPID $GPID $RPID $P1 $P2 2>/dev/null; rm -rf "$CFG" "$OUT"; restore_machine' EXIT
sleep 1
# $1 port, $2 result name, $3 body, then extra sluice-bench arguments.
run() {
  local port=$1 name=$2 body=$3; shift 3
  taskset -c 1 $BIN/sluice-bench --url "http://127.0.0.1:$port/v1/chat/completions" --body "$body" \
    -c "$CONNS" -d "$DUR" --warmup 2s --out "$OUT/$name.json" "$@" >/dev/null 2>&1
}
for i in $(seq 1 "$REPS"); do
  run "$GW" "off-$i" "$BODY"
  run "$MEM" "memory-$i" "$BODY" -H "authorization: Bearer $BENCH_KEY"
  run "$RED" "redis-$i" "$BODY" -H "authorization: Bearer $BENCH_KEY"
done
python3 perf/summary.py "$OUT" "$REPS" off="governance off" memory="keys + RPM + TPM + budget + usage log, memory" redis="the same, redis" --vs off
