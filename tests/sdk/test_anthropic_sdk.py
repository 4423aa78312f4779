"""The official `anthropic` SDK against Sluice's `/v1/messages`, routed to every upstream format.

m-openai → OpenAI-compatible, m-anthropic → Anthropic (passthrough), m-gemini → Gemini,
m-azure → Azure OpenAI; all served by `sluice-mock` (see conftest.py).
"""
import anthropic
import pytest

MODELS = ["m-openai", "m-anthropic", "m-gemini", "m-azure"]
PROVIDERS = {"m-openai": "up_openai", "m-anthropic": "up_anthropic", "m-gemini": "up_gemini", "m-azure": "up_azure"}

ECHO = {"x-mock-echo": "1"}
PROMPT = "the quick brown fox jumps"

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}


@pytest.fixture
def client(anthropic_base_url):
    # The client's key is Sluice's business; it is never forwarded upstream.
    return anthropic.Anthropic(base_url=anthropic_base_url, api_key="sk-client", max_retries=0, timeout=10)


@pytest.mark.parametrize("model", MODELS)
def test_message(client, model):
    r = client.messages.with_raw_response.create(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers=ECHO,
    )
    assert r.headers["x-sluice-provider"] == PROVIDERS[model]
    m = r.parse()
    assert m.type == "message"
    assert m.role == "assistant"
    assert len(m.content) == 1
    assert m.content[0].type == "text"
    assert m.content[0].text == PROMPT
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0
    assert m.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_system_prompt_and_history(client, model):
    # A system prompt and earlier turns must survive translation; echo answers the last user turn.
    m = client.messages.create(
        model=model,
        max_tokens=64,
        system="You are terse.",
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
        ],
        extra_headers=ECHO,
    )
    assert m.content[0].text == PROMPT
    assert m.stop_reason == "end_turn"


@pytest.mark.parametrize("model", MODELS)
def test_max_tokens_stop_reason(client, model):
    m = client.messages.create(
        model=model,
        max_tokens=2,
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers=ECHO,
    )
    assert m.stop_reason == "max_tokens"
    assert m.content[0].text == "the quick"
    assert m.usage.output_tokens == 2


@pytest.mark.parametrize("model", MODELS)
def test_stream(client, model):
    with client.messages.stream(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers={**ECHO, "x-mock-itl-ms": "1"},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == PROMPT
    assert len(pieces) > 1, "expected the text in several deltas"
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text"
    assert final.content[0].text == PROMPT
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_use(client, model):
    m = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Paris"}],
    )
    assert m.stop_reason == "tool_use"
    uses = [b for b in m.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    assert uses[0].id
    assert set(uses[0].input) == {"city"}
    assert uses[0].input == {"city": "Paris"}


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_forced(client, model):
    other = {
        "name": "lookup",
        "description": "Look something up.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    }
    m = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER_TOOL, other],
        tool_choice={"type": "tool", "name": "lookup"},
        messages=[{"role": "user", "content": "Paris"}],
    )
    uses = [b for b in m.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["lookup"]
    assert uses[0].input == {"query": "Paris"}


@pytest.mark.parametrize("model", MODELS)
def test_tool_use_stream(client, model):
    with client.messages.stream(
        model=model,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Paris in the spring"}],
        extra_headers={"x-mock-itl-ms": "1"},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "get_weather"
    assert uses[0].id
    # Proves the input_json_delta pieces were assembled into the right object.
    assert uses[0].input == {"city": "Paris in the spring"}
    assert any(e.type == "input_json" for e in events), "no input_json_delta event seen"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_result_turn(client, model):
    m = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Paris"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny, 21C"}],
            },
        ],
    )
    assert m.stop_reason == "end_turn"
    text = "".join(b.text for b in m.content if b.type == "text")
    assert text.startswith("Tool result:")
    assert "sunny, 21C" in text


@pytest.mark.parametrize("model", MODELS)
def test_upstream_rate_limit(client, model):
    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(
            model=model,
            max_tokens=16,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-fault": "status=429"},
        )
    assert e.value.status_code == 429
    assert e.value.response.headers.get("x-sluice-provider") == PROVIDERS[model]
    # Errors come back in the client's (Anthropic) format, whatever the upstream spoke.
    assert isinstance(e.value.body, dict)
    assert e.value.body.get("type") == "error"
    assert e.value.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("model", MODELS)
def test_upstream_bad_request(client, model):
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(
            model=model,
            max_tokens=16,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-fault": "status=400"},
        )
    assert e.value.status_code == 400
    assert e.value.body.get("type") == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("model", MODELS)
def test_stream_upstream_rate_limit(client, model):
    with pytest.raises(anthropic.RateLimitError):
        with client.messages.stream(
            model=model,
            max_tokens=16,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-fault": "status=429"},
        ) as stream:
            for _ in stream:
                pass


@pytest.mark.parametrize("model", MODELS)
def test_stream_cut_mid_way_raises(client, model):
    # A stream that dies before message_stop must surface as an error, not a short answer.
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(
            model=model,
            max_tokens=64,
            messages=[{"role": "user", "content": PROMPT}],
            extra_headers={"x-mock-fault": "truncate", "x-mock-fault-after": "2"},
        ) as stream:
            for _ in stream:
                pass


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="nope", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert e.value.body.get("type") == "error"
    assert e.value.body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(client, model):
    short = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
    long = client.messages.count_tokens(
        model=model,
        system="You are a helpful assistant.",
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": PROMPT * 20}],
    )
    assert short.input_tokens > 0
    assert long.input_tokens > short.input_tokens
