#!/usr/bin/env bash
# Gateway throughput with 1, 2 and 8 targets in a model's pool (round-robin
# and least-connections), same machine, same run, N repetitions.
# Sluice runs one worker pinned to core 0; mock and load generator share core 1.
# Usage: perf/bench-targets.sh [duration=5s] [connections=32] [reps=3]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5s}; CONNS=${2:-32}; REPS=${3:-3}
BODY=perf/scenarios/chat-1k.json
. perf/setup.sh
targets() { for i in $(seq 1 "$1"); do printf '{ provider: mock, model: m%s }, ' "$i"; done; }
{ head_yaml "$GW" "$ADMIN"; cat <<YAML
auth: none
models:
  t1: { targets: [ $(targets 1) ] }
  t2: { targets: [ $(targets 2) ] }
  t8: { targets: [ $(targets 8) ] }
  t8-lc: { balance: least_connections, targets: [ $(targets 8) ] }
YAML
} > "$CFG"
for m in t1 t2 t8 t8-lc; do
  python3 - "$BODY" "$OUT/$m.body" "$m" <<'PY'
import json, sys
b = json.load(open(sys.argv[1])); b["model"] = sys.argv[3]
json.dump(b, open(sys.argv[2], "w"))
PY
done
taskset -c 1 $BIN/sluice-mock --listen 127.0.0.1:$MOCK --threads 1 >/dev/null & MPID=$!
taskset -c 0 $BIN/sluice --config "$CFG" 2>/dev/null & GPID=$!
trap 'kill $MPID $GPID 2>/dev/null; rm -rf "$CFG" "$OUT"; restore_machine' EXIT
sleep 1
for i in $(seq 1 "$REPS"); do
  for m in t1 t2 t8 t8-lc; do
    taskset -c 1 $BIN/sluice-bench --url "http://127.0.0.1:$GW/v1/chat/completions" --body "$OUT/$m.body" \
      -c "$CONNS" -d "$DUR" --warmup 2s --out "$OUT/$m-$i.json" >/dev/null 2>&1
  done
done
python3 perf/summary.py "$OUT" "$REPS" t1="1 target" t2="2 targets, round-robin" t8="8 targets, round-robin" t8-lc="8 targets, least-connections" --vs t1
