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
features_yaml() {
  head_yaml "$1" "$2"; cat <<YAML
models:
  demo:
    targets: [ { provider: mock, model: gpt-4o } ]  # so token_count uses tiktoken
    filters:
      token_count: { on_disconnect: drain }
      pii: { action: reversible }
      guardrails: { prompt_injection: block, max_messages: 500, max_message_chars: 200000 }
auth: keys
tenants:
  t: { limits: { rpm: 1000000000, tpm: 1000000000000 }, budget: { usd: 1000000000, period: monthly } }
keys:
  - { id: bench, tenant: t, key: "\${BENCH_KEY}", limits: { rpm: 1000000000, tpm: 1000000000000 } }
usage_log: { path: $OUT/usage.jsonl, fsync: interval }
YAML
}
