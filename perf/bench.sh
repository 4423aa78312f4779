#!/usr/bin/env bash
# The compare run: the same load, on one machine, through each of
#   direct        the mock upstream itself
#   nginx         nginx as a plain reverse proxy (Debian's package)
#   pingora       a bare Pingora ProxyHttp passthrough (perf/baselines)
#   pingora-json  the same, parsing each request body as JSON
#   sluice        Sluice, OpenAI -> OpenAI, no filters
#   features      Sluice with keys, RPM/TPM limits, a budget, the usage log,
#                 token counting, PII redaction and guardrails
#   translate     Sluice translating OpenAI -> Anthropic
# non-streamed and streamed (1 KB prompts), then at concurrency 1, then
# streams open-loop at half of Sluice's saturation for time to first token.
# Every proxy runs one worker pinned to core 0; the mock and the load
# generator share core 1. Prints markdown tables of medians and ratios.
# Usage: perf/bench.sh [duration=5s] [connections=32] [reps=3]
# On a KVM guest, HALT_POLL_NS=200000 turns the guest's idle polling on for
# the run (see perf/setup.sh); the tables end with the setting they ran at.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5s}; CONNS=${2:-32}; REPS=${3:-3}
BODY=perf/scenarios/chat-1k.json; SBODY=perf/scenarios/chat-1k-stream.json
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || scripts/setup.sh --nginx
. perf/setup.sh
NGX=$(port); PG=$(port); PGJ=$(port); FT=$(port); FT_ADMIN=$(port)
# Sluice: passthrough and translation on one instance, features on another
# (governance is per instance).
{ head_yaml "$GW" "$ADMIN"; cat <<YAML
  claude: { kind: anthropic, base_url: "http://127.0.0.1:$MOCK", api_key: "\${BENCH_UPSTREAM_KEY}" }
auth: none
models:
  demo: { targets: [ { provider: mock, model: demo } ] }
  translated: { targets: [ { provider: claude, model: claude-sonnet-4-5 } ] }
YAML
} > "$CFG"
FCFG="$OUT/features.yaml"
features_yaml "$FT" "$FT_ADMIN" > "$FCFG"
cat > "$OUT/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $OUT/nginx-body;
  proxy_temp_path $OUT/nginx-proxy;
  upstream mock { server 127.0.0.1:$MOCK; keepalive 256; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
for f in "$BODY" "$SBODY"; do
  python3 - "$f" "$OUT/translated-$(basename "$f")" <<'PY'
import json, sys
b = json.load(open(sys.argv[1])); b["model"] = "translated"
json.dump(b, open(sys.argv[2], "w"))
PY
done
PIDS=()
trap 'kill ${PIDS[@]} 2>/dev/null; rm -rf "$CFG" "$OUT"; restore_machine' EXIT
taskset -c 1 $BIN/sluice-mock --listen 127.0.0.1:$MOCK --threads 1 >/dev/null & PIDS+=($!)
taskset -c 0 "$NGINX" -p "$OUT" -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" & PIDS+=($!)
taskset -c 0 $BIN/pingora-passthrough --listen 127.0.0.1:$PG --upstream 127.0.0.1:$MOCK 2>/dev/null & PIDS+=($!)
taskset -c 0 $BIN/pingora-passthrough --listen 127.0.0.1:$PGJ --upstream 127.0.0.1:$MOCK --parse-json 2>/dev/null & PIDS+=($!)
taskset -c 0 $BIN/sluice --config "$CFG" 2>/dev/null & PIDS+=($!)
taskset -c 0 $BIN/sluice --config "$FCFG" 2>/dev/null & PIDS+=($!)
sleep 1.5
# $1 result name, $2 port, $3 body, then extra sluice-bench arguments.
run() {
  local name=$1 port=$2 body=$3; shift 3
  taskset -c 1 $BIN/sluice-bench --url "http://127.0.0.1:$port/v1/chat/completions" --body "$body" \
    -d "$DUR" --warmup 2s --out "$OUT/$name.json" "$@" >/dev/null 2>&1 || echo "run $name failed" >&2
}
AUTH=(-H "authorization: Bearer $BENCH_KEY")
for i in $(seq 1 "$REPS"); do
  echo "repetition $i of $REPS" >&2
  for mode in plain stream; do
    b=$BODY; [ $mode = stream ] && b=$SBODY
    run "$mode-direct-$i" "$MOCK" "$b" -c "$CONNS"
    run "$mode-nginx-$i" "$NGX" "$b" -c "$CONNS"
    run "$mode-pingora-$i" "$PG" "$b" -c "$CONNS"
    [ $mode = plain ] && run "$mode-pingora-json-$i" "$PGJ" "$b" -c "$CONNS"
    run "$mode-sluice-$i" "$GW" "$b" -c "$CONNS"
    run "$mode-features-$i" "$FT" "$b" -c "$CONNS" "${AUTH[@]}"
    run "$mode-translate-$i" "$GW" "$OUT/translated-$(basename "$b")" -c "$CONNS"
  done
  run "c1-direct-$i" "$MOCK" "$BODY" -c 1
  run "c1-nginx-$i" "$NGX" "$BODY" -c 1
  run "c1-pingora-$i" "$PG" "$BODY" -c 1
  run "c1-sluice-$i" "$GW" "$BODY" -c 1
done
# Time to first token at half of Sluice's saturation, open loop.
HALF=$(python3 - "$OUT" "$REPS" <<'PY'
import json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
print(round(statistics.median(json.load(open(f"{out}/stream-sluice-{i}.json"))["rps"] for i in range(1, reps + 1)) / 2))
PY
)
for i in $(seq 1 "$REPS"); do
  run "half-direct-$i" "$MOCK" "$SBODY" -c "$CONNS" --rate "$HALF"
  run "half-nginx-$i" "$NGX" "$SBODY" -c "$CONNS" --rate "$HALF"
  run "half-pingora-$i" "$PG" "$SBODY" -c "$CONNS" --rate "$HALF"
  run "half-sluice-$i" "$GW" "$SBODY" -c "$CONNS" --rate "$HALF"
done
python3 perf/compare.py "$OUT" "$REPS" "$HALF"
echo "($(machine_line))"
