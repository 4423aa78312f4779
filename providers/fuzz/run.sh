#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60), seeded from the golden
# files. cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP lets the stable
# toolchain provide them.
#   cargo install cargo-fuzz && providers/fuzz/run.sh 60
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
for t in decode_request decode_response decode_stream sse; do
  mkdir -p "corpus/$t"
  for f in ../tests/golden/*; do
    case "$t" in
      decode_stream|sse) { printf '\x40'; cat "$f"; } > "corpus/$t/$(basename "$f")" ;;
      *) cp "$f" "corpus/$t/" ;;
    esac
  done
  echo "fuzz: $t for ${secs}s" >&2
  cargo fuzz run "$t" -j1 -- -max_total_time="$secs" -max_len=65536 2>&1 | tail -n 3
done
