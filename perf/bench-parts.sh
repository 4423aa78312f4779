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
model() {  # $1: with filters
  printf 'models:\n  demo:\n    targets: [ { provider: mock, model: gpt-4o } ]\n'
  [ "$1" = yes ] && cat <<YAML
    filters:
      token_count: { on_disconnect: drain }
      pii: { action: reversible }
      guardrails: { prompt_injection: block, max_messages: 500, max_message_chars: 200000 }
YAML
  return 0
}
part() {  # $1 part, $2 listen, $3 admin
  head_yaml "$2" "$3"
  case $1 in
    plain) model no; echo "auth: none" ;;
    filters) model yes; echo "auth: none" ;;
    keys) model no; printf 'auth: keys\ntenants: { t: {} }\nkeys: [ { id: bench, tenant: t, key: "${BENCH_KEY}" } ]\n' ;;
    limits | full)
      if [ "$1" = full ]; then model yes; else model no; fi
      cat <<YAML
auth: keys
tenants:
  t: { limits: { rpm: 1000000000, tpm: 1000000000000 }, budget: { usd: 1000000000, period: monthly } }
keys:
  - { id: bench, tenant: t, key: "\${BENCH_KEY}", limits: { rpm: 1000000000, tpm: 1000000000000 } }
YAML
      if [ "$1" = full ]; then echo "usage_log: { path: $OUT/usage-$1.jsonl, fsync: interval }"; fi
      ;;
    usage) model no; printf 'auth: keys\ntenants: { t: {} }\nkeys: [ { id: bench, tenant: t, key: "${BENCH_KEY}" } ]\n'
      echo "usage_log: { path: $OUT/usage-$1.jsonl, fsync: interval }" ;;
  esac
}
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$CFG" "$OUT"' EXIT
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
