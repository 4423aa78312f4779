"""Official SDKs authenticate to Sluice unchanged: `openai` (Authorization:
Bearer), `anthropic` (x-api-key) and `openai.AzureOpenAI` (api-key, Azure's
deployment paths). Refusals surface as the SDKs' own exception types."""
import anthropic
import openai
import pytest

from conftest import CLIENT_KEY

MESSAGES = [{"role": "user", "content": "hello"}]


def test_openai_bearer(auth_origin):
    c = openai.OpenAI(base_url=f"{auth_origin}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    r = c.chat.completions.with_raw_response.create(model="m-openai", messages=MESSAGES, max_tokens=8)
    assert r.http_response.status_code == 200
    assert r.headers["x-ratelimit-limit-requests"] == "10000"
    assert int(r.headers["x-ratelimit-remaining-tokens"]) < 10000000
    assert r.parse().choices[0].message.content
    # Streams too.
    chunks = list(c.chat.completions.create(model="m-openai", messages=MESSAGES, max_tokens=8, stream=True))
    assert any(ch.choices and ch.choices[0].delta.content for ch in chunks)


def test_anthropic_x_api_key(auth_origin):
    c = anthropic.Anthropic(base_url=auth_origin, api_key=CLIENT_KEY, max_retries=0, timeout=10)
    m = c.messages.create(model="m-anthropic", max_tokens=8, messages=MESSAGES)
    assert m.content[0].text
    with c.messages.stream(model="m-openai", max_tokens=8, messages=MESSAGES) as s:
        assert s.get_final_text()


def test_azure_api_key_and_deployment_paths(auth_origin):
    c = openai.AzureOpenAI(
        azure_endpoint=auth_origin, api_key=CLIENT_KEY, api_version="2024-10-21", max_retries=0, timeout=10
    )
    r = c.chat.completions.create(model="m-openai", messages=MESSAGES, max_tokens=8)
    assert r.choices[0].message.content


def test_refusals_are_the_sdks_own_errors(auth_origin):
    bad = openai.OpenAI(base_url=f"{auth_origin}/v1", api_key="sk-not-a-key-at-all", max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="m-openai", messages=MESSAGES)
    assert e.value.code == "invalid_api_key"
    good = openai.OpenAI(base_url=f"{auth_origin}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)
    with pytest.raises(openai.PermissionDeniedError):
        good.chat.completions.create(model="other", messages=MESSAGES)
    # The model list shows only what the key may use.
    assert sorted(m.id for m in good.models.list()) == ["m-anthropic", "m-openai"]
    bad_a = anthropic.Anthropic(base_url=auth_origin, api_key="sk-not-a-key-at-all", max_retries=0, timeout=10)
    with pytest.raises(anthropic.AuthenticationError):
        bad_a.messages.create(model="m-anthropic", max_tokens=8, messages=MESSAGES)
