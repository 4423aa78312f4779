use serde_json::{json, Value};
use sluice_perf::mock::MockOptions;

use crate::support::{event_names, events, json, mock, send, try_send, Headers};

const V: (&str, &str) = ("anthropic-version", "2023-06-01");

fn body(extra: Value) -> String {
    let mut b = json!({"model": "claude-x", "max_tokens": 100,
                       "messages": [{"role": "user", "content": "What is up"}]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b.to_string()
}

fn weather_tools() -> Value {
    json!([{"name": "get_weather", "description": "Weather for a city",
            "input_schema": {"type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"]}},
           {"name": "get_time", "input_schema": {"type": "object",
                "properties": {"zone": {"type": "string"}}}}])
}

#[tokio::test]
async fn non_stream_response_shape() {
    let m = mock(MockOptions::default()).await;
    let r = send(
        &m,
        "POST",
        "/v1/messages",
        &[V, ("x-mock-tokens", "5")],
        &body(json!({})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("request-id").unwrap().starts_with("req_"));
    let v = json(&r);
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-x");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from the Sluice mock"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    let u = &v["usage"];
    assert!(u["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(u["output_tokens"], 5);
    assert_eq!(u["cache_creation_input_tokens"], 0);
    assert_eq!(u["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_set_stop_reason() {
    let m = mock(MockOptions::default()).await;
    let r = send(
        &m,
        "POST",
        "/v1/messages",
        &[V],
        &body(json!({"max_tokens": 3})),
    )
    .await;
    let v = json(&r);
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 3);
    let b = body(json!({"stop_sequences": [" mock", "zzz"]}));
    let v = json(&send(&m, "POST", "/v1/messages", &[V], &b).await);
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], " mock");
    assert_eq!(v["content"][0]["text"], "Hello from the Sluice");
}

#[tokio::test]
async fn stream_event_sequence_matches_the_reference() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({"stream": true}));
    let r = send(&m, "POST", "/v1/messages", &[V, ("x-mock-tokens", "3")], &b).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(r.header("request-id").is_some());
    let evs = events(&r.body);
    assert_eq!(
        event_names(&evs),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    for e in &evs {
        assert_eq!(e.json()["type"], e.event.as_deref().unwrap(), "{e:?}");
    }
    let start = evs[0].json();
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    assert!(start["message"]["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        evs[1].json()["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = evs[3..6]
        .iter()
        .map(|e| {
            let d = e.json();
            assert_eq!(d["index"], 0);
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, "Hello from the");
    let delta = evs[7].json();
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(delta["usage"]["output_tokens"], 3);
}

#[tokio::test]
async fn echo_uses_last_user_text_and_count_tokens_agrees() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({"system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "first"},
                     {"role": "assistant", "content": "ok"},
                     {"role": "user", "content": [{"type": "text", "text": "say this back"}]}]}));
    let v = json(&send(&m, "POST", "/v1/messages", &[V, ("x-mock-echo", "1")], &b).await);
    assert_eq!(v["content"][0]["text"], "say this back");
    assert_eq!(v["usage"]["output_tokens"], 3);
    let mut counted: Value = serde_json::from_str(&b).unwrap();
    counted.as_object_mut().unwrap().remove("max_tokens");
    let r = send(
        &m,
        "POST",
        "/v1/messages/count_tokens",
        &[V],
        &counted.to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        json(&r),
        json!({"input_tokens": v["usage"]["input_tokens"]})
    );
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let m = mock(MockOptions::default()).await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (json!({"model": "m", "messages": msgs}), "max_tokens"),
        (
            json!({"model": "m", "max_tokens": 0, "messages": msgs}),
            "max_tokens",
        ),
        (
            json!({"model": "m", "max_tokens": "9", "messages": msgs}),
            "max_tokens",
        ),
        (json!({"max_tokens": 5, "messages": msgs}), "model"),
        (json!({"model": "m", "max_tokens": 5}), "messages"),
        (
            json!({"model": "m", "max_tokens": 5,
                   "messages": [{"role": "system", "content": "x"}]}),
            "messages.0.role",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": msgs, "system": 7}),
            "system",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": msgs,
                   "system": [{"type": "image", "text": "x"}]}),
            "system.0.type",
        ),
    ];
    for (b, field) in cases {
        let r = send(&m, "POST", "/v1/messages", &[V], &b.to_string()).await;
        assert_eq!(r.status, 400, "{b}");
        let v = json(&r);
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("{field}:")),
            "{msg} should name {field}"
        );
    }
    let r = send(&m, "POST", "/v1/messages/batches", &[V], "{}").await;
    assert_eq!(r.status, 404);
    assert_eq!(json(&r)["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn auth_needs_x_api_key_and_version() {
    let m = mock(MockOptions {
        api_key: Some("sk-ant".into()),
        ..MockOptions::default()
    })
    .await;
    let b = body(json!({}));
    let cases: [(Headers, u16, &str); 5] = [
        (&[V], 401, "authentication_error"),
        (&[V, ("x-api-key", "nope")], 401, "authentication_error"),
        (
            &[V, ("authorization", "Bearer sk-ant")],
            401,
            "authentication_error",
        ),
        (&[("x-api-key", "sk-ant")], 400, "invalid_request_error"),
        (&[V, ("x-api-key", "sk-ant")], 200, ""),
    ];
    for (headers, status, kind) in cases {
        let r = send(&m, "POST", "/v1/messages", headers, &b).await;
        assert_eq!(r.status, status, "{headers:?}");
        if status != 200 {
            let v = json(&r);
            assert_eq!(
                (v["type"].as_str(), v["error"]["type"].as_str()),
                (Some("error"), Some(kind))
            );
        }
    }
    let open = mock(MockOptions::default()).await;
    let r = send(&open, "POST", "/v1/messages", &[], &b).await;
    assert_eq!(r.status, 400);
    assert!(json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic-version"));
}

#[tokio::test]
async fn status_faults_use_anthropic_error_types() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({}));
    let h = [
        V,
        ("x-mock-fault", "status=429"),
        ("x-mock-retry-after", "7"),
    ];
    let r = send(&m, "POST", "/v1/messages", &h, &b).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert!(r.header("request-id").is_some());
    let v = json(&r);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    for (code, kind) in [
        (529, "overloaded_error"),
        (500, "api_error"),
        (413, "request_too_large"),
        (403, "permission_error"),
        (502, "api_error"),
    ] {
        let f = format!("status={code}");
        let r = send(&m, "POST", "/v1/messages", &[V, ("x-mock-fault", &f)], &b).await;
        assert_eq!(
            (r.status, json(&r)["error"]["type"].clone()),
            (code, json!(kind))
        );
    }
}

#[tokio::test]
async fn mid_stream_faults_are_anthropic_shaped() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({"stream": true}));
    let h = [
        V,
        ("x-mock-fault", "status=529"),
        ("x-mock-fault-after", "2"),
    ];
    let r = send(&m, "POST", "/v1/messages", &h, &b).await;
    let evs = events(&r.body);
    let names = event_names(&evs);
    assert_eq!(
        names[3..],
        ["content_block_delta", "content_block_delta", "error"]
    );
    let err = evs.last().unwrap().json();
    assert_eq!(
        err,
        json!({"type": "error", "error": {"type": "overloaded_error",
        "message": "Injected fault: status 529"}})
    );

    let h = [
        V,
        ("x-mock-fault", "malformed"),
        ("x-mock-fault-after", "1"),
    ];
    let r = send(&m, "POST", "/v1/messages", &h, &b).await;
    let evs = events(&r.body);
    let bad: Vec<_> = evs
        .iter()
        .filter(|e| serde_json::from_str::<Value>(&e.data).is_err())
        .collect();
    assert_eq!(bad.len(), 1, "{evs:?}");
    assert_eq!(bad[0].event.as_deref(), Some("content_block_delta"));
    assert_eq!(event_names(&evs).last(), Some(&"message_stop"));

    let h = [V, ("x-mock-fault", "truncate"), ("x-mock-fault-after", "1")];
    assert!(try_send(&m, "POST", "/v1/messages", &h, &b).await.is_err());
}

#[tokio::test]
async fn tool_use_non_stream_and_stream_agree() {
    let m = mock(MockOptions::default()).await;
    let msgs = json!([{"role": "user", "content": "Paris"}]);
    let b = body(json!({"tools": weather_tools(), "messages": msgs}));
    let v = json(&send(&m, "POST", "/v1/messages", &[V], &b).await);
    assert_eq!(v["stop_reason"], "tool_use");
    let block = &v["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "Paris"}));

    let b = body(json!({"tools": weather_tools(), "messages": msgs, "stream": true}));
    let r = send(&m, "POST", "/v1/messages", &[V], &b).await;
    let evs = events(&r.body);
    let names = event_names(&evs);
    let n = names.len();
    assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        n - 6 >= 3,
        "arguments should arrive in several pieces: {names:?}"
    );
    let start = evs[1].json()["content_block"].clone();
    assert_eq!(start["type"], "tool_use");
    assert_eq!(start["name"], "get_weather");
    assert_eq!(start["input"], json!({}));
    let mut partial = String::new();
    for e in &evs[3..n - 3] {
        let d = e.json()["delta"].clone();
        assert_eq!(d["type"], "input_json_delta");
        partial.push_str(d["partial_json"].as_str().unwrap());
    }
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"city": "Paris"})
    );
    let delta = evs[n - 2].json();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], v["usage"]["output_tokens"]);
}

#[tokio::test]
async fn tool_choice_forces_or_forbids() {
    let m = mock(MockOptions::default()).await;
    let forced = body(json!({"tools": weather_tools(),
        "tool_choice": {"type": "tool", "name": "get_time"}}));
    let v = json(&send(&m, "POST", "/v1/messages", &[V], &forced).await);
    assert_eq!(v["content"][0]["name"], "get_time");
    assert_eq!(v["content"][0]["input"], json!({"zone": "What is up"}));
    let none = body(json!({"tools": weather_tools(), "tool_choice": {"type": "none"}}));
    let v = json(&send(&m, "POST", "/v1/messages", &[V], &none).await);
    assert_eq!(
        (v["content"][0]["type"].as_str(), v["stop_reason"].as_str()),
        (Some("text"), Some("end_turn"))
    );
    let unknown = body(json!({"tools": weather_tools(),
        "tool_choice": {"type": "tool", "name": "nope"}}));
    assert_eq!(
        send(&m, "POST", "/v1/messages", &[V], &unknown)
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn tool_result_turn_answers_text() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({"tools": weather_tools(), "messages": [
        {"role": "user", "content": "Paris"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
            "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "18C and sunny"}]}]}]}));
    let v = json(&send(&m, "POST", "/v1/messages", &[V], &b).await);
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Tool result: 18C and sunny"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["usage"]["output_tokens"], 5);
}
