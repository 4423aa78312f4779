//! OpenAI tool calls, and behaviour that must be the same in every format.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_perf::mock::MockOptions;

use crate::support::{events, json, mock, send};

const CHAT: &str = "/v1/chat/completions";

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                           "unit": {"type": "string"}},
            "required": ["city", "country"]}}},
        {"type": "function", "function": {"name": "noop"}}])
}

fn chat(extra: Value) -> String {
    let mut b = json!({"model": "gpt-x",
        "messages": [{"role": "system", "content": "sys"},
                     {"role": "user", "content": "Rome"}],
        "tools": weather_tools()});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b.to_string()
}

#[tokio::test]
async fn openai_tool_call_non_stream() {
    let m = mock(MockOptions::default()).await;
    let r = send(&m, "POST", CHAT, &[], &chat(json!({}))).await;
    assert_eq!(r.status, 200);
    let v = json(&r);
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Rome", "country": "Rome"}));
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap())
    );
}

#[tokio::test]
async fn openai_tool_call_stream_pieces_rejoin() {
    let m = mock(MockOptions::default()).await;
    let b = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let r = send(&m, "POST", CHAT, &[], &b).await;
    let evs = events(&r.body);
    assert_eq!(evs.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = evs[..evs.len() - 1].iter().map(|e| e.json()).collect();
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    let head = &first["tool_calls"][0];
    assert_eq!(head["index"], 0);
    assert!(head["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(head["type"], "function");
    assert_eq!(head["function"]["name"], "get_weather");
    assert_eq!(head["function"]["arguments"], "");
    let mut args = String::new();
    let mut pieces = 0;
    for c in &chunks[1..] {
        if let Some(tc) = c["choices"][0]["delta"]["tool_calls"].get(0) {
            assert_eq!(tc["index"], 0);
            assert!(tc.get("id").is_none());
            args.push_str(tc["function"]["arguments"].as_str().unwrap());
            pieces += 1;
        }
    }
    assert!((3..=4).contains(&pieces), "{pieces} pieces");
    let parsed: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(parsed, json!({"city": "Rome", "country": "Rome"}));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let whole = json(&send(&m, "POST", CHAT, &[], &chat(json!({}))).await);
    assert_eq!(chunks.last().unwrap()["usage"], whole["usage"]);
}

#[tokio::test]
async fn openai_tool_choice_and_tool_result() {
    let m = mock(MockOptions::default()).await;
    let forced = chat(json!({"tool_choice": {"type": "function", "function": {"name": "noop"}}}));
    let v = json(&send(&m, "POST", CHAT, &[], &forced).await);
    let f = &v["choices"][0]["message"]["tool_calls"][0]["function"];
    assert_eq!(
        (f["name"].as_str(), f["arguments"].as_str()),
        (Some("noop"), Some(r#"{"input":"Rome"}"#))
    );
    let none = chat(json!({"tool_choice": "none"}));
    let v = json(&send(&m, "POST", CHAT, &[], &none).await);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["choices"][0]["message"]["content"].is_string());
    let result = chat(json!({"messages": [
        {"role": "user", "content": "Rome"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21C clear"}]}));
    let v = json(&send(&m, "POST", CHAT, &[], &result).await);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool result: 21C clear"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

/// Path, headers and body of one request.
type Call = (String, Vec<(&'static str, &'static str)>, String);

/// One echo-able request in each format.
fn per_format(stream: bool) -> Vec<Call> {
    let msgs = json!([{"role": "user", "content": "one two three"}]);
    vec![
        (
            "/v1/chat/completions".into(),
            vec![],
            json!({"model": "m", "messages": msgs, "stream": stream}).to_string(),
        ),
        (
            "/openai/deployments/d/chat/completions?api-version=2024-10-21".into(),
            vec![],
            json!({"messages": msgs, "stream": stream}).to_string(),
        ),
        (
            "/v1/messages".into(),
            vec![("anthropic-version", "2023-06-01")],
            json!({"model": "m", "max_tokens": 50, "messages": msgs, "stream": stream}).to_string(),
        ),
        (
            if stream {
                "/v1beta/models/g:streamGenerateContent?alt=sse"
            } else {
                "/v1beta/models/g:generateContent"
            }
            .into(),
            vec![],
            json!({"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]})
                .to_string(),
        ),
    ]
}

/// The assistant text of a non-stream answer in any format.
fn answer_text(v: &Value) -> Option<&str> {
    v.pointer("/choices/0/message/content")
        .or_else(|| v.pointer("/content/0/text"))
        .or_else(|| v.pointer("/candidates/0/content/parts/0/text"))
        .and_then(Value::as_str)
}

#[tokio::test]
async fn echo_tokens_and_ttft_work_in_every_format() {
    let m = mock(MockOptions::default()).await;
    for (path, mut h, body) in per_format(false) {
        h.push(("x-mock-echo", "1"));
        let v = json(&send(&m, "POST", &path, &h, &body).await);
        assert_eq!(answer_text(&v), Some("one two three"), "{path}");
    }
    for (path, mut h, body) in per_format(false) {
        h.extend([("x-mock-tokens", "2"), ("x-mock-ttft-ms", "60")]);
        let t = Instant::now();
        let v = json(&send(&m, "POST", &path, &h, &body).await);
        assert!(t.elapsed() >= Duration::from_millis(60), "{path}");
        assert_eq!(answer_text(&v), Some("Hello from"), "{path}");
    }
    for (path, mut h, body) in per_format(true) {
        h.extend([("x-mock-tokens", "4"), ("x-mock-itl-ms", "15")]);
        let t = Instant::now();
        let r = send(&m, "POST", &path, &h, &body).await;
        assert!(t.elapsed() >= Duration::from_millis(45), "{path}");
        let tokens = String::from_utf8_lossy(&r.body).matches("Sluice").count();
        assert_eq!(tokens, 1, "{path}: 4th token streamed once");
        assert!(!events(&r.body).is_empty());
    }
}

#[tokio::test]
async fn status_faults_use_the_called_formats_shape() {
    let m = mock(MockOptions::default()).await;
    let h429 = [("x-mock-fault", "status=429"), ("x-mock-retry-after", "9")];
    let mut shapes = Vec::new();
    for (path, mut h, body) in per_format(false) {
        h.extend(h429);
        let r = send(&m, "POST", &path, &h, &body).await;
        assert_eq!(r.status, 429, "{path}");
        assert_eq!(r.header("retry-after"), Some("9"), "{path}");
        let v = json(&r);
        shapes.push(if v["type"] == "error" {
            v["error"]["type"].clone()
        } else if v["error"]["status"].is_string() {
            v["error"]["status"].clone()
        } else {
            v["error"]["type"].clone()
        });
    }
    assert_eq!(
        shapes,
        [
            json!("requests"),
            json!("requests"),
            json!("rate_limit_error"),
            json!("RESOURCE_EXHAUSTED")
        ]
    );
}
