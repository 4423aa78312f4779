#!/usr/bin/env bash
# The soak: Sluice with its features on (as in bench.sh), first saturated
# for 5 s to find its rate, then held at half that rate, open loop, for the
# duration. Prints Sluice's resident memory every 30 s, then at start and
# end, and the run's summary (latency, errors).
# Sluice runs one worker pinned to core 0; mock and load share core 1.
# Usage: perf/soak.sh [duration=10m] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10m}; CONNS=${2:-64}
BODY=perf/scenarios/chat-1k.json
. perf/setup.sh
features_yaml "$GW" "$ADMIN" > "$CFG"
taskset -c 1 $BIN/sluice-mock --listen 127.0.0.1:$MOCK --threads 1 >/dev/null & MPID=$!
taskset -c 0 $BIN/sluice --config "$CFG" 2>/dev/null & GPID=$!
BPID=
trap 'kill $MPID $GPID $BPID 2>/dev/null; rm -rf "$CFG" "$OUT"; restore_machine' EXIT
sleep 1.5
BENCH=(taskset -c 1 "$BIN/sluice-bench" -q --url "http://127.0.0.1:$GW/v1/chat/completions" --body "$BODY"
  -H "authorization: Bearer $BENCH_KEY")
rss() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' /proc/$GPID/status; }
"${BENCH[@]}" -c 32 -d 5s --warmup 2s --out "$OUT/saturation.json" >/dev/null 2>&1
HALF=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['rps'] / 2))" "$OUT/saturation.json")
[ "$HALF" -gt 0 ] || { echo "Sluice answered nothing: no rate to soak at" >&2; exit 1; }
echo "saturation $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['rps']))" "$OUT/saturation.json") req/s; soaking at $HALF req/s for $DUR" >&2
# Backgrounded itself (not through a function) so the trap can stop it.
"${BENCH[@]}" -c "$CONNS" --rate "$HALF" -d "$DUR" --warmup 10s --out "$OUT/soak.json" >/dev/null 2>&1 & BPID=$!
sleep 10
START=$(rss); echo "rss at start: $START MB" >&2
while kill -0 $BPID 2>/dev/null; do
  sleep 30
  kill -0 $BPID 2>/dev/null && echo "  $(date -u +%T) rss $(rss) MB" >&2
done
wait "$BPID" || { echo "the soak's load run failed" >&2; exit 1; }
BPID=
END=$(rss)
python3 - "$OUT/soak.json" "$START" "$END" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency"]
print("| rate req/s | requests | errors | p50 µs | p99 µs | RSS start MB | RSS end MB |")
print("|---|---|---|---|---|---|---|")
print(f"| {r['rps']:,.0f} | {r['requests']:,} | {sum(r['errors'].values())} "
      f"| {lat['p50_us']:,} | {lat['p99_us']:,} | {sys.argv[2]} | {sys.argv[3]} |")
PY
