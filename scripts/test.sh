#!/usr/bin/env bash
# The whole test suite: Rust unit + integration tests, then the official SDK suite.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast
SLUICE_BIN="$PWD/target/debug/sluice" .venv/bin/python -m pytest -q tests/sdk tests/perf
