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
auth: none
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
    # Faults injected here test error mapping; retries and breakers have
    # their own tests (gateway/tests/routing.rs).
    retry: {{ attempts: 1 }}
    breaker: {{ enabled: false }}
  text-embedding-demo:
    targets: [ {{ provider: demo, model: demo }} ]
  locked:
    targets: [ {{ provider: nokey }} ]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def base_url():
    """`…/v1` of a sluice serving the embedded mock (start_with and serve are below)."""
    start = lambda: start_with(lambda port, admin: CONFIG.format(port=port, admin=admin), {}, 1)
    for origin in serve(start, "mock config"):
        yield f"{origin}/v1"


# --- Translation: a second sluice whose providers of every kind point at `sluice-mock`. ---

# The key the mock demands and sluice sends upstream; given to sluice only as
# an `${ENV}` reference, never written into the config.
SDK_KEY = "sk-sluice-sdk-upstream"

TRANSLATION_CONFIG = """
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin}
  threads: 1
  access_log: false
auth: none
providers:
  up_openai:
    kind: openai_compatible
    base_url: "http://127.0.0.1:{mock}/v1"
    api_key: "${{SLUICE_SDK_KEY}}"
    forward_headers: ["x-mock-*"]
  up_anthropic:
    kind: anthropic
    base_url: "http://127.0.0.1:{mock}"
    api_key: "${{SLUICE_SDK_KEY}}"
    forward_headers: ["x-mock-*"]
  up_gemini:
    kind: gemini
    base_url: "http://127.0.0.1:{mock}"
    api_key: "${{SLUICE_SDK_KEY}}"
    forward_headers: ["x-mock-*"]
  up_azure:
    kind: azure
    base_url: "http://127.0.0.1:{mock}"
    api_key: "${{SLUICE_SDK_KEY}}"
    api_version: "2024-10-21"
    forward_headers: ["x-mock-*"]
  up_down:
    kind: openai_compatible
    base_url: "http://127.0.0.1:{dead}/v1"
models:
  m-openai:
    targets: [ {{ provider: up_openai, model: gpt-mock }} ]
  fb-openai:
    targets: [ {{ provider: up_down, model: gpt-gone }} ]
    retry: {{ attempts: 1 }}
    fallback: [ m-anthropic ]
  m-anthropic:
    targets: [ {{ provider: up_anthropic, model: claude-mock }} ]
  m-gemini:
    targets: [ {{ provider: up_gemini, model: gemini-mock }} ]
  m-azure:
    targets: [ {{ provider: up_azure, model: gpt-deploy }} ]
  e-gemini:
    targets: [ {{ provider: up_gemini, model: text-embedding-004 }} ]
"""
TRANSLATION_MODELS = 6


def start_mock():
    """One attempt at starting `sluice-mock` on a free port; (proc, port) or None."""
    port = free_port()
    binary = os.environ.get("SLUICE_MOCK_BIN", "target/debug/sluice-mock")
    proc = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--api-key", SDK_KEY],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:  # lost the port race, most likely
            return None
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models", headers={"authorization": f"Bearer {SDK_KEY}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.05)
    stop(proc)
    return None


def start_with(config, env, models_needed):
    """One attempt at starting sluice on `config` (ports filled in here);
    ((proc, port), cfg) once `models_needed` models are ready, or (None, cfg)."""
    port, admin = free_port(), free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(config(port, admin))
    cfg.close()
    binary = os.environ.get("SLUICE_BIN", "target/debug/sluice")
    proc = subprocess.Popen(
        [binary, "--config", cfg.name], stdout=subprocess.DEVNULL, env=dict(os.environ, **env)
    )
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            return None, cfg.name
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                if json.load(r)["models_available"] >= models_needed:
                    return (proc, port), cfg.name
        except OSError:
            time.sleep(0.05)
    stop(proc)
    return None, cfg.name


def start_translation(mock_port):
    """Sluice in front of the mock, with a provider of every kind (and one down)."""
    return start_with(
        # A port nothing listens on: the provider that is down.
        lambda port, admin: TRANSLATION_CONFIG.format(port=port, admin=admin, mock=mock_port, dead=free_port()),
        {"SLUICE_SDK_KEY": SDK_KEY},
        TRANSLATION_MODELS,
    )


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def mock_port():
    for _ in range(5):
        started = start_mock()
        if started:
            proc, port = started
            yield port
            stop(proc)
            return
    pytest.fail("sluice-mock did not start")


def serve(start, what):
    """Yields the origin of a sluice from `start` (five tries), stops it after."""
    for _ in range(5):
        started, cfg = start()
        if started:
            proc, port = started
            yield f"http://127.0.0.1:{port}"
            stop(proc)
            os.unlink(cfg)
            return
        os.unlink(cfg)
    pytest.fail(f"sluice ({what}) did not start")


@pytest.fixture(scope="session")
def translation_origin(mock_port):
    """`http://127.0.0.1:PORT` of a sluice routing m-openai/m-anthropic/m-gemini/m-azure/e-gemini to the mock."""
    yield from serve(lambda: start_translation(mock_port), "translation config")


@pytest.fixture(scope="session")
def openai_base_url(translation_origin):
    """Base URL for `openai.OpenAI` (with `/v1`)."""
    return f"{translation_origin}/v1"


@pytest.fixture(scope="session")
def anthropic_base_url(translation_origin):
    """Base URL for `anthropic.Anthropic` (without `/v1`: the SDK posts to `/v1/messages`)."""
    return translation_origin


# --- Governance: a third sluice that demands keys, in front of the same mock. ---

CLIENT_KEY = "sk-sluice-client-key-0123456789"

AUTH_CONFIG = """
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin}
  threads: 1
  access_log: false
auth: {{ mode: keys, admin_token: "${{SLUICE_SDK_ADMIN}}" }}
tenants:
  acme: {{ models: ["m-*"], limits: {{ rpm: 10000, tpm: 10000000 }} }}
keys:
  - {{ id: sdk, tenant: acme, key: "${{SLUICE_SDK_CLIENT_KEY}}" }}
providers:
  up_openai:
    kind: openai_compatible
    base_url: "http://127.0.0.1:{mock}/v1"
    api_key: "${{SLUICE_SDK_KEY}}"
  up_anthropic:
    kind: anthropic
    base_url: "http://127.0.0.1:{mock}"
    api_key: "${{SLUICE_SDK_KEY}}"
models:
  m-openai:
    targets: [ {{ provider: up_openai, model: gpt-mock }} ]
  m-anthropic:
    targets: [ {{ provider: up_anthropic, model: claude-mock }} ]
  other:
    targets: [ {{ provider: up_openai, model: gpt-mock }} ]
"""


def start_auth(mock_port):
    """Sluice in front of the mock that demands keys."""
    return start_with(
        lambda port, admin: AUTH_CONFIG.format(port=port, admin=admin, mock=mock_port),
        {"SLUICE_SDK_KEY": SDK_KEY, "SLUICE_SDK_CLIENT_KEY": CLIENT_KEY, "SLUICE_SDK_ADMIN": "sdk-admin-token"},
        3,
    )


@pytest.fixture(scope="session")
def auth_origin(mock_port):
    """`http://127.0.0.1:PORT` of a sluice that only serves key holders."""
    yield from serve(lambda: start_auth(mock_port), "auth config")
