#!/usr/bin/env bash
# Where the features-on time goes: one Sluice per part of the features-on
# config, loaded in turn (interleaved), N repetitions, with each part's
# added time per request over plain passthrough. Parts: the body filters
# alone (token counting, reversible PII, guardrails), keys alone, keys with
# RPM/TPM limits and a budget, keys with the usage log, and everything.
# Each Sluice runs one worker pinned to core 0; mock and load generator
# share core 1.
# Usage: perf/bench-parts.sh [duration=5s] [connections=32] [reps=3] [body=perf/scenarios/chat-1k.json]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5s}; CONNS=${2:-32}; REPS=${3:-3}; BODY=${4:-perf/scenarios/chat-1k.json}
. perf/setup.sh
PARTS="plain filters keys limits usage full"
part() {  # $1 part, $2 listen, $3 admin
  head_yaml "$2" "$3"
  case $1 in
    plain) demo_model_yaml no; echo "auth: none" ;;
    filters) demo_model_yaml yes; echo "auth: none" ;;
    keys) demo_model_yaml no; keys_yaml no ;;
    limits) demo_model_yaml no; keys_yaml yes ;;
    usage) demo_model_yaml no; keys_yaml no ;;
    full) demo_model_yaml yes; keys_yaml yes ;;
  esac
  case $1 in
    usage | full) echo "usage_log: { path: $OUT/usage-$1.jsonl, fsync: interval }" ;;
  esac
}
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$CFG" "$OUT"; restore_machine' EXIT
taskset -c 1 $BIN/sluice-mock --listen 127.0.0.1:$MOCK --threads 1 >/dev/null & PIDS+=($!)
declare -A PORT
for p in $PARTS; do
  PORT[$p]=$(port)
  part "$p" "${PORT[$p]}" "$(port)" > "$OUT/$p.yaml"
  taskset -c 0 $BIN/sluice --config "$OUT/$p.yaml" 2>/dev/null & PIDS+=($!)
done
sleep 1
for i in $(seq 1 "$REPS"); do
  for p in $PARTS; do
    taskset -c 1 $BIN/sluice-bench --url "http://127.0.0.1:${PORT[$p]}/v1/chat/completions" --body "$BODY" \
      -c "$CONNS" -d "$DUR" --warmup 1s --out "$OUT/$p-$i.json" -H "authorization: Bearer $BENCH_KEY" >/dev/null 2>&1
  done
done
python3 perf/summary.py "$OUT" "$REPS" plain="passthrough (plain)" filters="filters only" \
  keys="keys only" limits="keys + RPM/TPM limits + budget" usage="keys + usage log" \
  full="features on (all of the above)" --vs plain
echo "($(machine_line))"
