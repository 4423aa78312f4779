"""Starts a real `sluice` on ephemeral loopback ports with the embedded mock provider."""
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

CONFIG = """
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin}
  threads: 1
  access_log: false
providers:
  demo:
    kind: mock
    forward_headers: ["x-mock-*"]
  nokey:
    kind: openai
    base_url: https://example.invalid/v1
    api_key: ${{SLUICE_SDK_TEST_UNSET}}
models:
  demo:
    targets: [ {{ provider: demo, model: demo }} ]
  text-embedding-demo:
    targets: [ {{ provider: demo, model: demo }} ]
  locked:
    targets: [ {{ provider: nokey }} ]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start():
    port, admin = free_port(), free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(CONFIG.format(port=port, admin=admin))
    cfg.close()
    binary = os.environ.get("SLUICE_BIN", "target/debug/sluice")
    proc = subprocess.Popen([binary, "--config", cfg.name], stdout=subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            return None, cfg.name
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                if json.load(r)["models_available"] >= 1:
                    return (proc, port), cfg.name
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None, cfg.name


@pytest.fixture(scope="session")
def base_url():
    for _ in range(5):
        started, cfg = start()
        if started:
            proc, port = started
            yield f"http://127.0.0.1:{port}/v1"
            proc.terminate()
            proc.wait(timeout=15)
            os.unlink(cfg)
            return
        os.unlink(cfg)
    pytest.fail("sluice did not start")
