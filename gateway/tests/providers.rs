//! One API in, every provider out: requests re-encoded per provider kind,
//! responses, streams and errors translated back, against the real mock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};
use sluice_perf::mock::{MockOptions, MockServer};

const KEY: &str = "sk-upstream-test";

fn config(mock: &MockServer) -> String {
    let o = mock.origin();
    format!(
        "providers:
  oa:
    kind: openai_compatible
    base_url: {o}/v1
    api_key: ${{SLUICE_T_KEY}}
    forward_headers: [\"x-mock-*\"]
  an:
    kind: anthropic
    base_url: {o}
    api_key: ${{SLUICE_T_KEY}}
    forward_headers: [\"x-mock-*\"]
  an_strict:
    kind: anthropic
    base_url: {o}
    api_key: ${{SLUICE_T_KEY}}
    strict: true
  ge:
    kind: gemini
    base_url: {o}
    api_key: ${{SLUICE_T_KEY}}
    forward_headers: [\"x-mock-*\"]
  az:
    kind: azure
    base_url: {o}
    api_key: ${{SLUICE_T_KEY}}
    api_version: 2024-10-21
    forward_headers: [\"x-mock-*\"]
models:
  m-openai: {{ targets: [ {{ provider: oa, model: gpt-up }} ] }}
  m-anthropic: {{ targets: [ {{ provider: an, model: claude-up }} ] }}
  m-strict: {{ targets: [ {{ provider: an_strict, model: claude-up }} ] }}
  m-gemini: {{ targets: [ {{ provider: ge, model: gemini-up }} ] }}
  m-azure: {{ targets: [ {{ provider: az, model: gpt-deploy }} ] }}
"
    )
}

async fn setup() -> (MockServer, Gateway) {
    let mock = mock(MockOptions {
        api_key: Some(KEY.into()),
        tokens: 4,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&config(&mock), &[("SLUICE_T_KEY", KEY)]).await;
    (mock, gw)
}

fn anthropic_body(model: &str, text: &str, stream: bool) -> Vec<u8> {
    json!({"model": model, "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
    .to_string()
    .into_bytes()
}

/// `(event name, data JSON)` pairs of an Anthropic-style stream.
fn named_events(body: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap();
                }
            }
            (name, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_gets_its_own_path_auth_and_body() {
    let (mock, gw) = setup().await;
    for (model, stream) in [
        ("m-anthropic", false),
        ("m-gemini", false),
        ("m-gemini", true),
        ("m-azure", false),
    ] {
        let r = post(
            gw.addr,
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-client"), ("x-mock-echo", "1")],
            &chat_body(model, "hello there", stream),
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{model}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let text = if stream {
            sse_data(&r.body)
                .iter()
                .filter(|d| *d != "[DONE]")
                .map(|d| serde_json::from_str::<Value>(d).unwrap())
                .filter_map(|v| {
                    v["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect::<String>()
        } else {
            r.json().unwrap()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(text, "hello there", "{model}");
    }
    let rec = mock.state.recorded();
    assert_eq!(rec[0].path, "/v1/messages");
    assert_eq!(rec[0].header("x-api-key"), Some(KEY));
    assert_eq!(rec[0].header("anthropic-version"), Some("2023-06-01"));
    assert!(rec[0].header("authorization").is_none());
    let body: Value = serde_json::from_slice(&rec[0].body).unwrap();
    assert_eq!(body["model"], "claude-up");
    assert_eq!(body["max_tokens"], 4096);
    assert_eq!(rec[1].path, "/v1beta/models/gemini-up:generateContent");
    assert_eq!(rec[1].header("x-goog-api-key"), Some(KEY));
    assert_eq!(
        rec[2].path,
        "/v1beta/models/gemini-up:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        rec[3].path,
        "/openai/deployments/gpt-deploy/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(rec[3].header("api-key"), Some(KEY));
    assert!(rec[3].header("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_inbound_passthrough_is_byte_exact() {
    let (mock, gw) = setup().await;
    let body = anthropic_body("m-anthropic", "hi", false);
    let r = post(gw.addr, "/v1/messages", &[("x-api-key", "client")], &body).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["type"], "message");
    let sent = String::from_utf8(body)
        .unwrap()
        .replacen("\"m-anthropic\"", "\"claude-up\"", 1);
    assert_eq!(mock.state.recorded()[0].body, sent.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_inbound_streams_from_an_openai_upstream_with_tools() {
    let (_mock, gw) = setup().await;
    let body = json!({
        "model": "m-openai", "max_tokens": 100, "stream": true,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "messages": [{"role": "user", "content": "Paris"}]
    });
    let r = post(gw.addr, "/v1/messages", &[], body.to_string().as_bytes()).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = named_events(&r.body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(
        &names[names.len() - 2..],
        &["message_delta", "message_stop"]
    );
    let json: String = events
        .iter()
        .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"city": "Paris"})
    );
    let start = events
        .iter()
        .find(|(_, d)| d["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(start.1["content_block"]["name"], "get_weather");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_arrive_in_the_clients_format_with_the_upstream_status() {
    let (_mock, gw) = setup().await;
    // Anthropic upstream error → OpenAI client.
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-mock-fault", "status=429"), ("x-mock-retry-after", "3")],
        &chat_body("m-anthropic", "x", false),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-sluice-provider"), Some("an"));
    assert_eq!(r.header("retry-after"), Some("3"));
    let v = error_json(&r);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // Gemini upstream error → Anthropic client.
    let r = post(
        gw.addr,
        "/v1/messages",
        &[("x-mock-fault", "status=503")],
        &anthropic_body("m-gemini", "x", false),
    )
    .await;
    assert_eq!(r.status, 503);
    let v = r.json().unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    // Sluice's own errors on /v1/messages are Anthropic-shaped too.
    let r = post(
        gw.addr,
        "/v1/messages",
        &[],
        &anthropic_body("nope", "x", false),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json().unwrap()["error"]["type"], "not_found_error");
    let r = post(
        gw.addr,
        "/v1/messages",
        &[],
        br#"{"model":"m-openai","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translated_stream_cut_by_the_upstream_ends_with_one_error_event() {
    let (_mock, gw) = setup().await;
    let r = post(
        gw.addr,
        "/v1/messages",
        &[("x-mock-fault", "truncate"), ("x-mock-fault-after", "2")],
        &anthropic_body("m-openai", "x", true),
    )
    .await;
    assert_eq!(r.status, 200);
    let events = named_events(&r.body);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{events:?}");
    assert_eq!(data["error"]["type"], "api_error");
    assert_eq!(events.iter().filter(|(n, _)| n == "error").count(), 1);
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_params_are_reported_or_refused_when_strict() {
    let (_mock, gw) = setup().await;
    let body =
        json!({"model": "m-anthropic", "seed": 3, "messages": [{"role": "user", "content": "x"}]});
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sluice-dropped-params"), Some("seed"));
    let body = json!({"model": "m-strict", "seed": 3, "logprobs": true, "messages": [{"role": "user", "content": "x"}]});
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 400);
    let msg = error_json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("seed,logprobs"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_is_local_or_passed_through_and_embeddings_translate() {
    let (mock, gw) = setup().await;
    let body = br#"{"model":"m-openai","messages":[{"role":"user","content":"count these words please"}]}"#;
    let r = post(gw.addr, "/v1/messages/count_tokens", &[], body).await;
    assert_eq!(r.status, 200);
    assert!(r.json().unwrap()["input_tokens"].as_u64().unwrap() > 0);
    assert!(mock.state.recorded().is_empty(), "answered locally");
    let body = br#"{"model":"m-anthropic","messages":[{"role":"user","content":"count"}]}"#;
    let r = post(gw.addr, "/v1/messages/count_tokens", &[], body).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(mock.state.recorded()[0].path, "/v1/messages/count_tokens");

    let r = post(
        gw.addr,
        "/v1/embeddings",
        &[],
        br#"{"model":"m-gemini","input":["a","b"],"encoding_format":"float"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json().unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(!v["data"][1]["embedding"].as_array().unwrap().is_empty());
    assert!(mock.state.recorded()[1]
        .path
        .ends_with(":batchEmbedContents"));
}
