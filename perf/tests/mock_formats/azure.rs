use serde_json::{json, Value};
use sluice_perf::mock::MockOptions;

use crate::support::{events, json, mock, send};

const CHAT: &str = "/openai/deployments/prod-gpt/chat/completions?api-version=2024-10-21";
const KEY: (&str, &str) = ("api-key", "az-key");

async fn keyed() -> sluice_perf::mock::MockServer {
    mock(MockOptions {
        api_key: Some("az-key".into()),
        ..MockOptions::default()
    })
    .await
}

fn chat_body(stream: bool) -> String {
    json!({"messages": [{"role": "user", "content": "hi"}], "stream": stream}).to_string()
}

#[tokio::test]
async fn chat_reports_the_deployment_as_model() {
    let m = keyed().await;
    let r = send(
        &m,
        "POST",
        CHAT,
        &[KEY, ("x-mock-tokens", "3")],
        &chat_body(false),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "prod-gpt");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from the");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["choices"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn stream_opens_with_the_prompt_filter_chunk() {
    let m = keyed().await;
    let r = send(
        &m,
        "POST",
        CHAT,
        &[KEY, ("x-mock-tokens", "2")],
        &chat_body(true),
    )
    .await;
    let evs = events(&r.body);
    // filter chunk, role, 2 tokens, finish, [DONE]
    assert_eq!(evs.len(), 6, "{evs:?}");
    let head = evs[0].json();
    assert_eq!(head["choices"], json!([]));
    assert!(head["prompt_filter_results"].is_array());
    assert_eq!(evs[1].json()["choices"][0]["delta"]["role"], "assistant");
    let text: String = evs[2..4]
        .iter()
        .map(|e| {
            e.json()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "Hello from");
    assert_eq!(evs[4].json()["choices"][0]["finish_reason"], "stop");
    assert_eq!(evs[4].json()["model"], "prod-gpt");
    assert_eq!(evs[5].data, "[DONE]");
}

#[tokio::test]
async fn api_version_is_required() {
    let m = keyed().await;
    let path = "/openai/deployments/prod-gpt/chat/completions";
    let r = send(&m, "POST", path, &[KEY], &chat_body(false)).await;
    assert_eq!(r.status, 400);
    let e = &json(&r)["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "api-version");
    assert!(e["message"].as_str().unwrap().contains("api-version"));
    let r = send(
        &m,
        "POST",
        "/openai/deployments/prod-gpt/nope?api-version=1",
        &[KEY],
        "{}",
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn auth_uses_api_key_header_only() {
    let m = keyed().await;
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("api-key", "wrong")],
        &[("authorization", "Bearer az-key")],
    ];
    for h in cases {
        let r = send(&m, "POST", CHAT, h, &chat_body(false)).await;
        assert_eq!(r.status, 401, "{h:?}");
        let e = &json(&r)["error"];
        assert_eq!(e["code"], "401");
        assert!(e["message"].as_str().unwrap().contains("Access denied"));
    }
    // And an OpenAI path does not take Azure's header.
    let r = send(
        &m,
        "POST",
        "/v1/chat/completions",
        &[KEY],
        &chat_body(false),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn embeddings_and_status_fault() {
    let m = keyed().await;
    let path = "/openai/deployments/emb/embeddings?api-version=2024-10-21";
    let b = json!({"input": ["a", "b"], "dimensions": 4}).to_string();
    let v = json(&send(&m, "POST", path, &[KEY], &b).await);
    assert_eq!(v["model"], "emb");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 4);
    let h = [
        KEY,
        ("x-mock-fault", "status=429"),
        ("x-mock-retry-after", "2"),
    ];
    let r = send(&m, "POST", CHAT, &h, &chat_body(false)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    let e: Value = json(&r)["error"].clone();
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(e["message"].is_string());
}

#[tokio::test]
async fn tool_calls_work_through_the_deployment() {
    let m = keyed().await;
    let b = json!({"messages": [{"role": "user", "content": "Oslo"}],
        "tools": [{"type": "function", "function": {"name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]});
    let v = json(&send(&m, "POST", CHAT, &[KEY], &b.to_string()).await);
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(call["function"]["arguments"], r#"{"q":"Oslo"}"#);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}
