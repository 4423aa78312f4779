"""The official `openai` SDK against Sluice, routed to every upstream format.

m-anthropic → Anthropic Messages, m-gemini → Gemini, m-azure → Azure OpenAI, m-openai → an
OpenAI-compatible server (passthrough); all served by `sluice-mock` (see conftest.py).
"""
import json

import openai
import pytest

MODELS = ["m-openai", "m-anthropic", "m-gemini", "m-azure"]
PROVIDERS = {"m-openai": "up_openai", "m-anthropic": "up_anthropic", "m-gemini": "up_gemini", "m-azure": "up_azure"}

ECHO = {"x-mock-echo": "1"}
PROMPT = "the quick brown fox jumps"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
LOOKUP_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


@pytest.fixture
def client(openai_base_url):
    # The client's key is Sluice's business; it is never forwarded upstream.
    return openai.OpenAI(base_url=openai_base_url, api_key="sk-client", max_retries=0, timeout=10)


@pytest.mark.parametrize("model", MODELS)
def test_chat(client, model):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], extra_headers=ECHO
    )
    assert raw.headers["x-sluice-provider"] == PROVIDERS[model]
    r = raw.parse()
    assert r.object == "chat.completion"
    assert len(r.choices) == 1
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == PROMPT
    assert r.choices[0].message.tool_calls is None or r.choices[0].message.tool_calls == []
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("model", MODELS)
def test_system_and_history(client, model):
    r = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
        ],
        extra_headers=ECHO,
    )
    assert r.choices[0].message.content == PROMPT
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", MODELS)
def test_max_tokens_finish_reason(client, model):
    r = client.chat.completions.create(
        model=model, max_tokens=2, messages=[{"role": "user", "content": PROMPT}], extra_headers=ECHO
    )
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "the quick"
    assert r.usage.completion_tokens == 2


@pytest.mark.parametrize("model", MODELS)
def test_stream_with_usage(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={**ECHO, "x-mock-itl-ms": "1"},
    )
    text, finish, usage_chunks, content_chunks = "", None, [], 0
    for chunk in stream:
        if chunk.usage:
            usage_chunks.append(chunk)
        for c in chunk.choices:
            if c.delta.content:
                content_chunks += 1
                text += c.delta.content
            finish = c.finish_reason or finish
    assert text == PROMPT
    assert content_chunks > 1, "expected the text in several deltas"
    assert finish == "stop"
    assert len(usage_chunks) == 1, "include_usage promises exactly one usage chunk"
    last = usage_chunks[0]
    assert last.choices == []
    assert last.usage.completion_tokens > 0
    assert last.usage.prompt_tokens > 0


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("model", MODELS)
def test_stream_chunks_are_openai_shaped(client, model, include_usage):
    # Every chunk an OpenAI client sees is a `chat.completion.chunk` with an id, and only the
    # final usage chunk (include_usage) may have no choices: clients index `chunk.choices[0]`.
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        extra_headers=ECHO,
        **extra,
    )
    chunks = []
    for line in raw.http_response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line[len("data: "):]))
    assert chunks
    for i, ch in enumerate(chunks):
        assert ch.get("object") == "chat.completion.chunk", f"chunk {i}: {ch}"
        assert ch.get("id"), f"chunk {i}: {ch}"
        if not ch.get("choices"):
            assert include_usage and i == len(chunks) - 1 and ch.get("usage"), f"chunk {i} has no choices: {ch}"


@pytest.mark.parametrize("model", MODELS)
def test_stream_without_usage(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        extra_headers=ECHO,
    )
    chunks = list(stream)
    assert "".join(c.delta.content or "" for ch in chunks for c in ch.choices) == PROMPT
    # Without stream_options.include_usage, OpenAI sends no usage chunk.
    assert all(ch.usage is None for ch in chunks)


@pytest.mark.parametrize("model", MODELS)
def test_tool_calls(client, model):
    r = client.chat.completions.create(
        model=model, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Paris"}]
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].id
    assert calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    assert set(args) == {"city"}
    assert args == {"city": "Paris"}


@pytest.mark.parametrize("model", MODELS)
def test_tool_calls_forced(client, model):
    r = client.chat.completions.create(
        model=model,
        tools=[WEATHER_TOOL, LOOKUP_TOOL],
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        messages=[{"role": "user", "content": "Paris"}],
    )
    calls = r.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["lookup"]
    assert json.loads(calls[0].function.arguments) == {"query": "Paris"}


@pytest.mark.parametrize("model", MODELS)
def test_tool_calls_stream(client, model):
    stream = client.chat.completions.create(
        model=model,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Paris in the spring"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-itl-ms": "1"},
    )
    calls, finish, usage = {}, None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for d in c.delta.tool_calls or []:
                if d.index not in calls:
                    # id, type and name arrive with the first delta of each call.
                    assert d.id, f"first delta of tool call {d.index} has no id"
                    assert d.function and d.function.name, f"first delta of tool call {d.index} has no name"
                    calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
                if d.function and d.function.arguments:
                    calls[d.index]["arguments"] += d.function.arguments
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris in the spring"}
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_result_turn(client, model):
    r = client.chat.completions.create(
        model=model,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Paris"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_01",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_01", "content": "sunny, 21C"},
        ],
    )
    assert r.choices[0].finish_reason == "stop"
    text = r.choices[0].message.content
    assert text.startswith("Tool result:")
    assert "sunny, 21C" in text


@pytest.mark.parametrize("model", MODELS)
def test_upstream_rate_limit(client, model):
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "status=429"}
        )
    assert e.value.status_code == 429
    assert e.value.response.headers.get("x-sluice-provider") == PROVIDERS[model]
    # Errors come back in the client's (OpenAI) format, whatever the upstream spoke.
    body = e.value.response.json()
    assert isinstance(body.get("error"), dict)
    assert body["error"].get("message")


@pytest.mark.parametrize("model", MODELS)
def test_upstream_bad_request(client, model):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-fault": "status=400"}
        )
    assert e.value.status_code == 400
    body = e.value.response.json()
    assert isinstance(body.get("error"), dict)
    assert body["error"].get("message")


@pytest.mark.parametrize("model", MODELS)
def test_stream_upstream_rate_limit(client, model):
    with pytest.raises(openai.RateLimitError):
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_headers={"x-mock-fault": "status=429"},
        )
        for _ in stream:
            pass


@pytest.mark.parametrize("model", MODELS)
def test_stream_cut_mid_way_raises(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        extra_headers={"x-mock-fault": "truncate", "x-mock-fault-after": "2"},
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_gemini_embeddings(client, encoding_format):
    # The SDK asks for base64 by default (and decodes it); "float" asks for plain lists.
    kwargs = {} if encoding_format is None else {"encoding_format": encoding_format}
    raw = client.embeddings.with_raw_response.create(model="e-gemini", input=["a", "b"], **kwargs)
    assert raw.headers["x-sluice-provider"] == "up_gemini"
    r = raw.parse()
    assert len(r.data) == 2
    assert [d.index for d in r.data] == [0, 1]
    a, b = r.data[0].embedding, r.data[1].embedding
    assert isinstance(a, list) and all(isinstance(x, float) for x in a)
    assert len(a) > 0
    assert len(a) == len(b)
    assert a != b


def test_gemini_single_embedding(client):
    r = client.embeddings.create(model="e-gemini", input="a", encoding_format="float")
    assert len(r.data) == 1
    assert len(r.data[0].embedding) > 0


def test_dropped_params_header(client):
    raw = client.chat.completions.with_raw_response.create(
        model="m-anthropic", seed=1, messages=[{"role": "user", "content": PROMPT}], extra_headers=ECHO
    )
    assert raw.headers["x-sluice-provider"] == "up_anthropic"
    dropped = [p.strip() for p in raw.headers.get("x-sluice-dropped-params", "").split(",")]
    assert "seed" in dropped
    # The request still succeeded.
    assert raw.parse().choices[0].message.content == PROMPT


def test_no_dropped_params_header_when_nothing_dropped(client):
    raw = client.chat.completions.with_raw_response.create(
        model="m-anthropic", messages=[{"role": "user", "content": PROMPT}], extra_headers=ECHO
    )
    assert "x-sluice-dropped-params" not in raw.headers


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_across_providers(client, stream):
    """fb-openai's only upstream (OpenAI-compatible) is down; its fallback is an Anthropic model."""
    raw = client.chat.completions.with_raw_response.create(
        model="fb-openai", messages=[{"role": "user", "content": PROMPT}], max_tokens=8, stream=stream,
        extra_headers=ECHO,
    )
    assert raw.headers["x-sluice-target"] == "up_anthropic/claude-mock"
    assert raw.headers["x-sluice-attempts"] == "2"
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text.startswith("the quick")
