# Sourced by the benchmark scripts: release binaries, three free loopback
# ports (MOCK, GW, ADMIN), a temp config file (CFG) and results dir (OUT).
cargo build --release --workspace --bins -q
BIN=target/release
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK=$(port); GW=$(port); ADMIN=$(port)
CFG=$(mktemp --suffix=.yaml)
OUT=$(mktemp -d)
