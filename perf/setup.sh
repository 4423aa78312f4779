# Sourced by the benchmark scripts: release binaries, three free loopback
# ports (MOCK, GW, ADMIN), a temp config file (CFG) and results dir (OUT).
# Sluice with keys on is called with `authorization: Bearer $BENCH_KEY`.
cargo build --release --workspace --bins -q
BIN=target/release
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK=$(port); GW=$(port); ADMIN=$(port)
CFG=$(mktemp --suffix=.yaml)
# The server line and the mock provider of a Sluice on ports $1 and $2.
head_yaml() {
  cat <<YAML
server: { listen: 127.0.0.1:$1, admin_listen: 127.0.0.1:$2, threads: 1, access_log: false }
providers:
  mock: { kind: openai_compatible, base_url: http://127.0.0.1:$MOCK/v1 }
YAML
}
OUT=$(mktemp -d)
# A Sluice on ports $1 and $2 with its features on: keys, RPM/TPM limits,
# a budget, the usage log, token counting, PII redaction and guardrails.
export BENCH_KEY=sk-bench-0123456789 BENCH_UPSTREAM_KEY=mock-key
# The demo model on the mock, with the bench's body filters when $1 = yes.
demo_model_yaml() {
  printf 'models:\n  demo:\n    targets: [ { provider: mock, model: gpt-4o } ]  # so token_count uses tiktoken\n'
  if [ "$1" = yes ]; then cat <<YAML
    filters:
      token_count: { on_disconnect: drain }
      pii: { action: reversible }
      guardrails: { prompt_injection: block, max_messages: 500, max_message_chars: 200000 }
YAML
  fi
}
# The bench key, with RPM/TPM limits and a budget when $1 = yes.
keys_yaml() {
  if [ "$1" = yes ]; then cat <<YAML
auth: keys
tenants:
  t: { limits: { rpm: 1000000000, tpm: 1000000000000 }, budget: { usd: 1000000000, period: monthly } }
keys:
  - { id: bench, tenant: t, key: "\${BENCH_KEY}", limits: { rpm: 1000000000, tpm: 1000000000000 } }
YAML
  else printf 'auth: keys\ntenants: { t: {} }\nkeys: [ { id: bench, tenant: t, key: "${BENCH_KEY}" } ]\n'
  fi
}
features_yaml() {
  head_yaml "$1" "$2"
  demo_model_yaml yes
  keys_yaml yes
  echo "usage_log: { path: $OUT/usage.jsonl, fsync: interval }"
}
# Idle polling of a KVM guest (the haltpoll cpuidle driver). With it off, a
# request's hop to the other core wakes a halted virtual CPU through the
# host, a cost that grows the more often that core idles, so it weighs on
# slower configurations more than on faster ones. HALT_POLL_NS=<ns> sets
# it for the run (200000 is the kernel's default; some images ship 0) and
# restore_machine, called from each script's exit trap, puts it back.
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
HALT_POLL_WAS=
restore_machine() {
  if [ -n "$HALT_POLL_WAS" ]; then echo "$HALT_POLL_WAS" > "$HALT_POLL"; fi
}
if [ -n "${HALT_POLL_NS:-}" ]; then
  if [ -w "$HALT_POLL" ]; then
    HALT_POLL_WAS=$(cat "$HALT_POLL")
    echo "$HALT_POLL_NS" > "$HALT_POLL"
    trap restore_machine EXIT
  else
    echo "HALT_POLL_NS: $HALT_POLL is not writable here; left as it is" >&2
  fi
fi
# One line saying how the machine idles, for the tables.
machine_line() {
  if [ -r "$HALT_POLL" ]; then echo "guest idle polling (guest_halt_poll_ns): $(cat "$HALT_POLL") ns"
  else echo "no guest idle-polling setting on this machine"; fi
}
