#!/usr/bin/env bash
# Installs what the build and the test suite need on a fresh Debian machine:
# cmake (Pingora's zlib-ng build) and a Python venv with the official SDKs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cmake >/dev/null 2>&1; then
  echo "setup: installing cmake" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq cmake >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openai, anthropic, pytest" 2>/dev/null; then
  echo "setup: installing SDK test requirements" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r tests/sdk/requirements.txt
fi
