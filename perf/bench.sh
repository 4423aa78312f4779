#!/usr/bin/env bash
# Direct-to-mock vs through Sluice (passthrough, and with every filter on),
# same machine, same run, N repetitions.
# Sluice runs one worker pinned to core 0; mock and load generator share core 1.
# Usage: perf/bench.sh [duration=10s] [connections=32] [reps=3] [body=perf/scenarios/chat-1k.json]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10s}; CONNS=${2:-32}; REPS=${3:-3}; BODY=${4:-perf/scenarios/chat-1k.json}
. perf/setup.sh
{ head_yaml "$GW" "$ADMIN"; cat <<YAML
auth: none
models:
  demo: { targets: [ { provider: mock, model: demo } ] }
  filtered:
    targets: [ { provider: mock, model: gpt-4o } ]  # so token_count uses tiktoken
    filters:
      token_count: { on_disconnect: drain }
      pii: { action: reversible }
      guardrails: { prompt_injection: block, max_messages: 500, max_message_chars: 200000 }
YAML
} > "$CFG"
FBODY="$OUT/filtered-body.json"
python3 - "$BODY" "$FBODY" <<'PY'
import json, sys
b = json.load(open(sys.argv[1])); b["model"] = "filtered"
json.dump(b, open(sys.argv[2], "w"))
PY
taskset -c 1 $BIN/sluice-mock --listen 127.0.0.1:$MOCK --threads 1 >/dev/null & MPID=$!
taskset -c 0 $BIN/sluice --config "$CFG" 2>/dev/null & GPID=$!
trap 'kill $MPID $GPID 2>/dev/null; rm -rf "$CFG" "$OUT"' EXIT
sleep 1
run() { taskset -c 1 $BIN/sluice-bench --url "http://127.0.0.1:$1/v1/chat/completions" --body "${3:-$BODY}" -c "$CONNS" -d "$DUR" --warmup 2s --out "$OUT/$2.json" >/dev/null 2>&1; }
for i in $(seq 1 "$REPS"); do
  run "$MOCK" "direct-$i"
  run "$GW" "sluice-$i"
  run "$GW" "filtered-$i" "$FBODY"
done
python3 perf/summary.py "$OUT" "$REPS" direct=direct sluice="Sluice, filters off" filtered="Sluice, filters on" --vs sluice
