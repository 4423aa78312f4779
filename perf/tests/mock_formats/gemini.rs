use serde_json::{json, Value};
use sluice_perf::mock::MockOptions;

use crate::support::{events, json, mock, send};

const GEN: &str = "/v1beta/models/gemini-x:generateContent";
const STREAM: &str = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse";

fn body(extra: Value) -> String {
    let mut b = json!({"contents": [{"role": "user", "parts": [{"text": "Where is it"}]}]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b.to_string()
}

fn tools() -> Value {
    json!([{"functionDeclarations": [
        {"name": "find_place", "description": "Locate a place",
         "parameters": {"type": "OBJECT",
            "properties": {"query": {"type": "STRING"}, "limit": {"type": "INTEGER"}},
            "required": ["query"]}},
        {"name": "list_places"}]}])
}

fn assert_google_error(r: &sluice_perf::client::Response, code: u16, status: &str) {
    assert_eq!(r.status, code);
    let v = json(r);
    assert_eq!(v["error"]["code"], code);
    assert_eq!(v["error"]["status"], status);
    assert!(v["error"]["message"].is_string());
}

#[tokio::test]
async fn non_stream_response_shape() {
    let m = mock(MockOptions::default()).await;
    let r = send(&m, "POST", GEN, &[("x-mock-tokens", "4")], &body(json!({}))).await;
    assert_eq!(r.status, 200);
    let v = json(&r);
    let c = &v["candidates"][0];
    assert_eq!(c["content"]["role"], "model");
    assert_eq!(
        c["content"]["parts"],
        json!([{"text": "Hello from the Sluice"}])
    );
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(c["index"], 0);
    let u = &v["usageMetadata"];
    let prompt = u["promptTokenCount"].as_u64().unwrap();
    assert!(prompt > 0);
    assert_eq!(u["candidatesTokenCount"], 4);
    assert_eq!(u["totalTokenCount"], prompt + 4);
    assert_eq!(v["modelVersion"], "gemini-x");
    assert!(v["responseId"].is_string());
}

#[tokio::test]
async fn stream_is_crlf_sse_with_usage_on_the_last_chunk() {
    let m = mock(MockOptions::default()).await;
    let r = send(
        &m,
        "POST",
        STREAM,
        &[("x-mock-tokens", "3")],
        &body(json!({})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let raw = String::from_utf8(r.body.to_vec()).unwrap();
    assert_eq!(raw.matches("\r\n\r\n").count(), 3, "{raw:?}");
    assert!(raw
        .split("\r\n\r\n")
        .all(|e| e.is_empty() || e.starts_with("data: {")));
    let evs = events(&r.body);
    assert_eq!(evs.len(), 3);
    let mut text = String::new();
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e.event, None);
        let v = e.json();
        let c = &v["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        text.push_str(c["content"]["parts"][0]["text"].as_str().unwrap());
        let last = i == 2;
        assert_eq!(c.get("finishReason").is_some(), last, "{v}");
        assert_eq!(v.get("usageMetadata").is_some(), last, "{v}");
    }
    assert_eq!(text, "Hello from the");
    assert_eq!(evs[2].json()["usageMetadata"]["candidatesTokenCount"], 3);
    // Without alt=sse Google answers one JSON array of the same chunks.
    let path = "/v1beta/models/gemini-x:streamGenerateContent";
    let v = json(
        &send(
            &m,
            "POST",
            path,
            &[("x-mock-tokens", "3")],
            &body(json!({})),
        )
        .await,
    );
    assert_eq!(v.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn generation_config_limits_and_echo() {
    let m = mock(MockOptions::default()).await;
    let b = body(
        json!({"generationConfig": {"maxOutputTokens": 2, "temperature": 0.5,
                                             "topP": 0.9, "topK": 3}}),
    );
    let v = json(&send(&m, "POST", GEN, &[], &b).await);
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 2);
    let b = body(json!({"generationConfig": {"stopSequences": [" Sluice"]}}));
    let v = json(&send(&m, "POST", GEN, &[], &b).await);
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from the"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    let b = body(
        json!({"systemInstruction": {"parts": [{"text": "Be terse"}]},
        "generationConfig": {"candidateCount": 2}}),
    );
    let v = json(&send(&m, "POST", GEN, &[("x-mock-echo", "1")], &b).await);
    assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["candidates"][1]["content"]["parts"][0]["text"],
        "Where is it"
    );
    assert_eq!(v["candidates"][1]["index"], 1);
    let b = body(
        json!({"generationConfig": {"responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"answer": {"type": "STRING"}},
                           "required": ["answer"]}}}),
    );
    let v = json(&send(&m, "POST", GEN, &[("x-mock-echo", "1")], &b).await);
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"answer": "Where is it"})
    );
}

#[tokio::test]
async fn validation_errors_are_invalid_argument() {
    let m = mock(MockOptions::default()).await;
    let cases = [
        json!({}),
        json!({"contents": []}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}),
        json!({"contents": [{"role": "user", "parts": []}]}),
        json!({"contents": [{"parts": [{"text": "x"}]}], "messages": []}),
        json!({"contents": [{"parts": [{"text": "x"}]}],
               "generationConfig": {"temperature": 3}}),
        json!({"contents": [{"parts": [{"inlineData": {"data": "AA=="}}]}]}),
    ];
    for b in cases {
        let r = send(&m, "POST", GEN, &[], &b.to_string()).await;
        assert_google_error(&r, 400, "INVALID_ARGUMENT");
    }
    let r = send(&m, "POST", GEN, &[], "{}").await;
    assert!(json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("contents"));
    let r = send(&m, "POST", "/v1beta/models/gemini-x:nope", &[], "{}").await;
    assert_google_error(&r, 404, "NOT_FOUND");
    // snake_case aliases are part of Google's JSON mapping.
    let b = json!({"contents": [{"parts": [{"inline_data": {"mime_type": "image/png", "data": "AA=="}},
                                          {"text": "what is this"}]}],
                   "generation_config": {"max_output_tokens": 1}});
    let r = send(&m, "POST", GEN, &[], &b.to_string()).await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["candidates"][0]["finishReason"], "MAX_TOKENS");
}

#[tokio::test]
async fn auth_by_header_or_query_key() {
    let m = mock(MockOptions {
        api_key: Some("g-key".into()),
        ..MockOptions::default()
    })
    .await;
    let b = body(json!({}));
    assert_eq!(
        send(&m, "POST", GEN, &[("x-goog-api-key", "g-key")], &b)
            .await
            .status,
        200
    );
    let with_key = format!("{STREAM}&key=g-key");
    assert_eq!(send(&m, "POST", &with_key, &[], &b).await.status, 200);
    for h in [
        vec![],
        vec![("x-goog-api-key", "bad")],
        vec![("authorization", "Bearer g-key")],
    ] {
        let r = send(&m, "POST", GEN, &h, &b).await;
        assert_google_error(&r, 401, "UNAUTHENTICATED");
    }
    let r = send(&m, "POST", &format!("{GEN}?key=bad"), &[], &b).await;
    assert_google_error(&r, 401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn faults_are_google_shaped() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({}));
    let h = [("x-mock-fault", "status=429"), ("x-mock-retry-after", "3")];
    let r = send(&m, "POST", GEN, &h, &b).await;
    assert_google_error(&r, 429, "RESOURCE_EXHAUSTED");
    assert_eq!(r.header("retry-after"), Some("3"));
    for (code, status) in [
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (403, "PERMISSION_DENIED"),
    ] {
        let f = format!("status={code}");
        let r = send(&m, "POST", GEN, &[("x-mock-fault", &f)], &b).await;
        assert_google_error(&r, code, status);
    }
    let h = [("x-mock-fault", "status=503"), ("x-mock-fault-after", "2")];
    let evs = events(&send(&m, "POST", STREAM, &h, &b).await.body);
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[2].json()["error"]["status"], "UNAVAILABLE");
    let h = [("x-mock-fault", "malformed"), ("x-mock-fault-after", "1")];
    let evs = events(&send(&m, "POST", STREAM, &h, &b).await.body);
    assert_eq!(evs.len(), 2);
    assert!(serde_json::from_str::<Value>(&evs[1].data).is_err());
}

#[tokio::test]
async fn embeddings_count_tokens_and_models() {
    let m = mock(MockOptions {
        dimensions: 12,
        models: vec!["gemini-x".into(), "embed-x".into()],
        ..MockOptions::default()
    })
    .await;
    let one = json!({"content": {"parts": [{"text": "hello"}]}});
    let v = json(
        &send(
            &m,
            "POST",
            "/v1beta/models/embed-x:embedContent",
            &[],
            &one.to_string(),
        )
        .await,
    );
    let values = v["embedding"]["values"].as_array().unwrap().clone();
    assert_eq!(values.len(), 12);
    let norm: f64 = values.iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
    assert!((norm - 1.0).abs() < 1e-3);
    let dims = json!({"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 5});
    let v = json(
        &send(
            &m,
            "POST",
            "/v1beta/models/embed-x:embedContent",
            &[],
            &dims.to_string(),
        )
        .await,
    );
    assert_eq!(v["embedding"]["values"].as_array().unwrap().len(), 5);
    let batch = json!({"requests": [
        {"model": "models/embed-x", "content": {"parts": [{"text": "hello"}]}},
        {"model": "models/embed-x", "content": {"parts": [{"text": "other"}]}}]});
    let path = "/v1beta/models/embed-x:batchEmbedContents";
    let v = json(&send(&m, "POST", path, &[], &batch.to_string()).await);
    let embs = v["embeddings"].as_array().unwrap();
    assert_eq!(embs.len(), 2);
    assert_eq!(embs[0]["values"].as_array().unwrap(), &values);
    assert_ne!(embs[1]["values"], embs[0]["values"]);
    let r = send(&m, "POST", "/v1beta/models/embed-x:embedContent", &[], "{}").await;
    assert_google_error(&r, 400, "INVALID_ARGUMENT");

    let b = body(json!({"tools": tools()}));
    let gen = json(&send(&m, "POST", GEN, &[], &b).await);
    let path = "/v1beta/models/gemini-x:countTokens";
    let v = json(&send(&m, "POST", path, &[], &b).await);
    assert_eq!(
        v,
        json!({"totalTokens": gen["usageMetadata"]["promptTokenCount"]})
    );
    let wrapped = json!({"generateContentRequest": serde_json::from_str::<Value>(&b).unwrap()});
    let v = json(&send(&m, "POST", path, &[], &wrapped.to_string()).await);
    assert_eq!(v["totalTokens"], gen["usageMetadata"]["promptTokenCount"]);

    let v = json(&send(&m, "GET", "/v1beta/models", &[], "").await);
    let names: Vec<_> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].clone())
        .collect();
    assert_eq!(names, [json!("models/gemini-x"), json!("models/embed-x")]);
}

#[tokio::test]
async fn function_calls_whole_in_json_and_stream() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({"tools": tools()}));
    let v = json(&send(&m, "POST", GEN, &[], &b).await);
    let c = &v["candidates"][0];
    assert_eq!(
        c["content"]["parts"],
        json!([{"functionCall": {"name": "find_place", "args": {"query": "Where is it"}}}])
    );
    assert_eq!(c["finishReason"], "STOP");
    let out = v["usageMetadata"]["candidatesTokenCount"].clone();
    assert!(out.as_u64().unwrap() > 0);

    let r = send(&m, "POST", STREAM, &[], &b).await;
    let evs = events(&r.body);
    assert_eq!(evs.len(), 1);
    let s = evs[0].json();
    assert_eq!(
        s["candidates"][0]["content"]["parts"],
        c["content"]["parts"]
    );
    assert_eq!(s["candidates"][0]["finishReason"], "STOP");
    assert_eq!(s["usageMetadata"]["candidatesTokenCount"], out);

    let any = body(
        json!({"tools": tools(), "toolConfig": {"functionCallingConfig":
        {"mode": "ANY", "allowedFunctionNames": ["list_places"]}}}),
    );
    let v = json(&send(&m, "POST", GEN, &[], &any).await);
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"name": "list_places", "args": {"input": "Where is it"}})
    );
    let none = body(json!({"tools": tools(),
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}));
    let v = json(&send(&m, "POST", GEN, &[], &none).await);
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string());
}

#[tokio::test]
async fn function_response_turn_answers_text() {
    let m = mock(MockOptions::default()).await;
    let b = body(json!({"tools": tools(), "contents": [
        {"role": "user", "parts": [{"text": "Where is it"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "find_place",
            "args": {"query": "Where is it"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "find_place",
            "response": {"result": "Lyon"}}}]}]}));
    let v = json(&send(&m, "POST", GEN, &[], &b).await);
    let c = &v["candidates"][0];
    assert_eq!(
        c["content"]["parts"],
        json!([{"text": "Tool result: {\"result\":\"Lyon\"}"}])
    );
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 3);
}
