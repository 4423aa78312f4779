#!/usr/bin/env bash
# Installs what the build and the test suite need on a fresh Debian machine:
# cmake (Pingora's zlib-ng build), redis-server (shared-store tests) and a
# Python venv with the official SDKs. With --nginx, also nginx (for the
# compare run, perf/bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# cmake for Pingora's zlib-ng build; redis-server for the shared-store tests.
missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${1:-}" = "--nginx" ] && ! command -v nginx >/dev/null 2>&1; then
  missing+=(nginx-light)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package starts a system instance; the tests start their own.
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    ($SUDO service redis-server stop || true) >/dev/null 2>&1
  fi
  # Likewise nginx: the compare run starts its own.
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
    ($SUDO service nginx stop || true) >/dev/null 2>&1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openai, anthropic, pytest" 2>/dev/null; then
  echo "setup: installing SDK test requirements" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
fi
