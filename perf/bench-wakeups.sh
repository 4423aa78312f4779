#!/usr/bin/env bash
# How often a request has to wake the load core: Sluice passthrough and
# Sluice with its features on, loaded in turn (interleaved), each run
# counting the wake-up interrupts (Linux's RES and CAL lines of
# /proc/interrupts) that each core received, per request. On a VM whose
# idle cores halt, each of those is a trip through the host that the
# sending core waits for; the table shows how many a configuration pays,
# so a ratio between two configurations can be told apart from the
# machine's wake-up cost. Same pinning as the compare run.
# Usage: perf/bench-wakeups.sh [requests=100000] [connections=32] [reps=3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}; CONNS=${2:-32}; REPS=${3:-3}; BODY=perf/scenarios/chat-1k.json
. perf/setup.sh
[ -r /proc/interrupts ] || { echo "no /proc/interrupts here" >&2; exit 1; }
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$CFG" "$OUT"; restore_machine' EXIT
taskset -c 1 $BIN/sluice-mock --listen 127.0.0.1:$MOCK --threads 1 >/dev/null & PIDS+=($!)
declare -A PORT
for c in plain features; do
  PORT[$c]=$(port)
  if [ $c = features ]; then features_yaml "${PORT[$c]}" "$(port)"
  else head_yaml "${PORT[$c]}" "$(port)"; demo_model_yaml no; echo "auth: none"; fi > "$OUT/$c.yaml"
  taskset -c 0 $BIN/sluice --config "$OUT/$c.yaml" 2>/dev/null & PIDS+=($!)
done
sleep 1
load() {  # $1 config, $2 requests, $3 result file (or /dev/null)
  taskset -c 1 $BIN/sluice-bench --url "http://127.0.0.1:${PORT[$1]}/v1/chat/completions" --body "$BODY" \
    -c "$CONNS" -n "$2" -q --out "$3" -H "authorization: Bearer $BENCH_KEY" >/dev/null 2>&1
}
# The RES and CAL lines: name, then one count per CPU.
wakeups() { grep -E '^ *(RES|CAL):' /proc/interrupts | awk '{printf "%s", $1; for (i = 2; i <= 3; i++) printf " %s", $i; print ""}'; }
for i in $(seq 1 "$REPS"); do
  for c in plain features; do
    load $c $((N / 5)) /dev/null
    wakeups > "$OUT/$c-$i.before"
    load $c "$N" "$OUT/$c-$i.json"
    wakeups > "$OUT/$c-$i.after"
  done
done
python3 - "$OUT" "$REPS" "$N" <<'PY'
import json, statistics, sys
out, reps, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def counts(path):
    return {l.split()[0].rstrip(":"): [int(x) for x in l.split()[1:]] for l in open(path)}
print("| configuration | req/s | wake-ups per request, core 0 (proxy) | core 1 (mock and load) |")
print("|---|---|---|---|")
names = {"plain": "Sluice passthrough", "features": "Sluice, features on"}
for c in ("plain", "features"):
    rps, per = [], [[], []]
    for i in range(1, reps + 1):
        rps.append(json.load(open(f"{out}/{c}-{i}.json"))["rps"])
        a, b = counts(f"{out}/{c}-{i}.before"), counts(f"{out}/{c}-{i}.after")
        for cpu in (0, 1):
            per[cpu].append(sum(b[k][cpu] - a[k][cpu] for k in a) / n)
    print(f"| {names[c]} | {statistics.median(rps):,.0f} | "
          f"{statistics.median(per[0]):.2f} | {statistics.median(per[1]):.2f} |")
print(f"\n(medians of {reps} runs of {n:,} requests)")
PY
echo "($(machine_line))"
