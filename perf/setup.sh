# Sourced by the benchmark scripts: release binaries, three free loopback
# ports (MOCK, GW, ADMIN), a temp config file (CFG) and results dir (OUT).
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
