//! Unit tests for the OpenAI wire format (the socket-level ones live in
//! `perf/tests`).

use super::*;
use crate::mock::controls::Controls;
use crate::mock::{MockOptions, MockState};

fn cx_with<'a>(state: &'a MockState, controls: &'a Controls) -> Ctx<'a> {
    Ctx {
        state,
        controls,
        id: 7,
        created: 1,
    }
}

fn controls(echo: bool) -> Controls {
    let mut c = Controls::from_headers(&MockOptions::default(), &[]);
    c.echo = echo;
    c
}

#[test]
fn chat_echoes_last_user_message() {
    let state = MockState::new(MockOptions::default());
    let c = controls(true);
    let body = br#"{"model":"m","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"hi there"}]}]}"#;
    let Reply::Json { status, body, .. } =
        route("POST", "/v1/chat/completions", body, &cx_with(&state, &c))
    else {
        panic!("expected json")
    };
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hi there");
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[test]
fn stream_with_usage_ends_with_usage_and_done() {
    let state = MockState::new(MockOptions::default());
    let c = controls(false);
    let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"q"}],"max_tokens":3}"#;
    let Reply::Stream {
        events,
        first_content,
    } = route("POST", "/v1/chat/completions", body, &cx_with(&state, &c))
    else {
        panic!("expected stream")
    };
    assert_eq!(first_content, 1);
    // role + 3 tokens + finish + usage + DONE
    assert_eq!(events.len(), 7);
    assert_eq!(events[6], TERMINAL);
    let finish: Value = serde_json::from_slice(&events[4][6..events[4].len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage: Value = serde_json::from_slice(&events[5][6..events[5].len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 3);
}

#[test]
fn invalid_json_is_400_in_openai_shape() {
    let state = MockState::new(MockOptions::default());
    let c = controls(false);
    let Reply::Json { status, body, .. } =
        route("POST", "/v1/chat/completions", b"{", &cx_with(&state, &c))
    else {
        panic!("expected json")
    };
    assert_eq!(status, 400);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[test]
fn embeddings_base64_decodes_to_dims_floats() {
    let state = MockState::new(MockOptions::default());
    let c = controls(false);
    let body = br#"{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":4}"#;
    let Reply::Json { body, .. } = route("POST", "/v1/embeddings", body, &cx_with(&state, &c))
    else {
        panic!("expected json")
    };
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let b64 = v["data"][1]["embedding"].as_str().unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(raw.len(), 16);
}

fn json_of(reply: Reply) -> (u16, Value) {
    let Reply::Json { status, body, .. } = reply else {
        panic!("expected json")
    };
    (status, serde_json::from_slice(&body).unwrap())
}

#[test]
fn tool_choice_none_and_unknown_tool() {
    let state = MockState::new(MockOptions::default());
    let c = controls(false);
    let tools = r#""tools":[{"type":"function","function":{"name":"f","parameters":{}}}]"#;
    let none = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"q"}}],{tools},"tool_choice":"none"}}"#
    );
    let (status, v) = json_of(chat(none.as_bytes(), &cx_with(&state, &c), None));
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let unknown = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"q"}}],{tools},"tool_choice":{{"type":"function","function":{{"name":"g"}}}}}}"#
    );
    let (status, v) = json_of(chat(unknown.as_bytes(), &cx_with(&state, &c), None));
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "tool_choice");
}

#[test]
fn stop_sequence_ends_text_with_stop() {
    let state = MockState::new(MockOptions::default());
    let c = controls(false);
    let body = br#"{"model":"m","messages":[{"role":"user","content":"q"}],"stop":[" the"]}"#;
    let (_, v) = json_of(chat(body, &cx_with(&state, &c), None));
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 2);
}
