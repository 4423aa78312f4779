"""The official `openai` SDK against Sluice, unchanged."""
import openai
import pytest


@pytest.fixture
def client(base_url):
    # The client's key is Sluice's business; it is never forwarded upstream.
    return openai.OpenAI(base_url=base_url, api_key="sk-client", max_retries=0, timeout=10)


def test_chat(client):
    r = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "ping"}], extra_headers={"x-mock-echo": "1"}
    )
    assert r.choices[0].message.content == "ping"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 1


def test_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-echo": "1", "x-mock-itl-ms": "1"},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text == "one two three"
    assert finish == "stop"
    assert usage.completion_tokens == 3


def test_legacy_completions(client):
    r = client.completions.create(
        model="demo", prompt="say this", max_tokens=1, extra_headers={"x-mock-echo": "1"}
    )
    assert r.choices[0].text == "say"
    assert r.choices[0].finish_reason == "length"


def test_embeddings(client):
    r = client.embeddings.create(model="text-embedding-demo", input=["a", "b"])
    assert len(r.data) == 2
    assert len(r.data[0].embedding) == 16


def test_models(client):
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["demo", "locked", "text-embedding-demo"]


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "Available models" in str(e.value)


def test_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="demo", messages=[])


def test_unavailable_model(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="locked", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 503
    assert "SLUICE_SDK_TEST_UNSET" in str(e.value)


def test_upstream_rate_limit(client):
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "status=429"}
        )


def test_upstream_down_is_502(client):
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "reset"}
        )
    assert e.value.status_code == 502


def test_stream_cut_mid_way_raises(client):
    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_headers={"x-mock-fault": "truncate", "x-mock-fault-after": "2"},
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
