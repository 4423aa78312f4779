//! OpenAI wire format, written from the public API reference:
//! chat completions, legacy completions, embeddings, models and errors.

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::controls::Controls;
use super::text;
use super::MockState;

pub enum Reply {
    Json {
        status: u16,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    /// Complete SSE events (`data: …\n\n`); `first_content` is the index of
    /// the first token event, so stream faults can land after N tokens.
    Stream {
        events: Vec<Vec<u8>>,
        first_content: usize,
    },
}

pub struct Ctx<'a> {
    pub state: &'a MockState,
    pub controls: &'a Controls,
    pub id: u64,
    pub created: u64,
}

pub fn route(method: &str, path: &str, body: &[u8], cx: &Ctx<'_>) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("POST", "/v1/chat/completions") => chat(body, cx),
        ("POST", "/v1/completions") => completions(body, cx),
        ("POST", "/v1/embeddings") => embeddings(body, cx),
        ("GET", "/v1/models") => models(cx),
        ("GET", "/healthz") => Reply::Json {
            status: 200,
            body: b"{\"status\":\"ok\"}".to_vec(),
            headers: Vec::new(),
        },
        (_, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/v1/models") => {
            error(405, &format!("Method {method} not allowed"), None)
        }
        _ => error(404, &format!("Unknown path {path}"), None),
    }
}

/// An error in OpenAI's shape with the type OpenAI uses for that status.
pub fn error(status: u16, message: &str, retry_after: Option<u64>) -> Reply {
    let (kind, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        500..=599 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    let mut headers = Vec::new();
    if let Some(s) = retry_after {
        headers.push(("retry-after", s.to_string()));
    }
    Reply::Json {
        status,
        body: body.to_string().into_bytes(),
        headers,
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

fn bad_request(e: serde_json::Error) -> Reply {
    error(400, &format!("Invalid request body: {e}"), None)
}

/// Text of a message `content`: a string, or an array of parts with `text`.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

struct Output {
    tokens: Vec<String>,
    finish: &'static str,
    prompt_tokens: u64,
}

fn output(echo_text: Option<String>, prompt_len: usize, max: Option<u64>, c: &Controls) -> Output {
    let mut tokens = match echo_text {
        Some(t) if c.echo => text::split_tokens(&t),
        _ => text::generated(c.tokens),
    };
    let mut finish = "stop";
    if let Some(max) = max {
        if (max as usize) < tokens.len() {
            tokens.truncate(max as usize);
            finish = "length";
        }
    }
    Output {
        tokens,
        finish,
        prompt_tokens: text::estimate_tokens(prompt_len),
    }
}

fn usage(o: &Output) -> Value {
    let c = o.tokens.len() as u64;
    json!({"prompt_tokens": o.prompt_tokens, "completion_tokens": c,
           "total_tokens": o.prompt_tokens + c})
}

fn sse(v: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

const DONE: &[u8] = b"data: [DONE]\n\n";

fn chat(body: &[u8], cx: &Ctx<'_>) -> Reply {
    let req: ChatRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    if req.messages.is_empty() {
        return error(400, "'messages' must contain at least one message", None);
    }
    let prompt_len: usize = req
        .messages
        .iter()
        .map(|m| m.get("content").map(content_text).map_or(0, |t| t.len()))
        .sum();
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text);
    let max = req.max_completion_tokens.or(req.max_tokens);
    let out = output(last_user, prompt_len, max, cx.controls);
    let id = format!("chatcmpl-mock{}", cx.id);
    let fp = "fp_sluice_mock";
    if !req.stream {
        let body = json!({
            "id": id, "object": "chat.completion", "created": cx.created, "model": req.model,
            "system_fingerprint": fp,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.tokens.concat(),
                         "refusal": null}, "logprobs": null, "finish_reason": out.finish}],
            "usage": usage(&out),
        });
        return json_ok(body);
    }
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let chunk = |delta: Value, finish: Value| {
        let mut v = json!({"id": id, "object": "chat.completion.chunk", "created": cx.created,
            "model": req.model, "system_fingerprint": fp,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            v["usage"] = Value::Null;
        }
        sse(&v)
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    )];
    for t in &out.tokens {
        events.push(chunk(json!({"content": t}), Value::Null));
    }
    events.push(chunk(json!({}), json!(out.finish)));
    if include_usage {
        events.push(sse(&json!({"id": id, "object": "chat.completion.chunk",
            "created": cx.created, "model": req.model, "system_fingerprint": fp,
            "choices": [], "usage": usage(&out)})));
    }
    events.push(DONE.to_vec());
    Reply::Stream {
        events,
        first_content: 1,
    }
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: Value,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
}

fn completions(body: &[u8], cx: &Ctx<'_>) -> Reply {
    let req: CompletionRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let prompt = match &req.prompt {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(""),
        _ => {
            return error(
                400,
                "'prompt' must be a string or an array of strings",
                None,
            )
        }
    };
    let out = output(
        Some(prompt.clone()),
        prompt.len(),
        req.max_tokens,
        cx.controls,
    );
    let id = format!("cmpl-mock{}", cx.id);
    if !req.stream {
        return json_ok(json!({
            "id": id, "object": "text_completion", "created": cx.created, "model": req.model,
            "choices": [{"text": out.tokens.concat(), "index": 0, "logprobs": null,
                         "finish_reason": out.finish}],
            "usage": usage(&out),
        }));
    }
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let chunk = |text: &str, finish: Value| {
        sse(
            &json!({"id": id, "object": "text_completion", "created": cx.created,
            "model": req.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    let mut events: Vec<Vec<u8>> = out.tokens.iter().map(|t| chunk(t, Value::Null)).collect();
    events.push(chunk("", json!(out.finish)));
    if include_usage {
        events.push(sse(
            &json!({"id": id, "object": "text_completion", "created": cx.created,
            "model": req.model, "choices": [], "usage": usage(&out)}),
        ));
    }
    events.push(DONE.to_vec());
    Reply::Stream {
        events,
        first_content: 0,
    }
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
}

fn embeddings(body: &[u8], cx: &Ctx<'_>) -> Reply {
    let req: EmbeddingRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let inputs: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() => a.iter().map(|v| v.to_string()).collect(),
        _ => return error(400, "'input' must be a non-empty string or array", None),
    };
    let dims = req
        .dimensions
        .unwrap_or(cx.state.options.dimensions)
        .clamp(1, 8192);
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return error(400, &format!("Unknown encoding_format '{other}'"), None),
    };
    let mut prompt_tokens = 0;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            prompt_tokens += text::estimate_tokens(s.len());
            let v = vector(s, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_ok(json!({"object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}))
}

/// A deterministic unit-length vector derived from the input text.
fn vector(s: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let raw: Vec<f32> = (0..dims)
        .map(|i| {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1 + i as u64);
            ((h >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

fn models(cx: &Ctx<'_>) -> Reply {
    let data: Vec<Value> = cx
        .state
        .options
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "sluice-mock"}))
        .collect();
    json_ok(json!({"object": "list", "data": data}))
}

fn json_ok(v: Value) -> Reply {
    Reply::Json {
        status: 200,
        body: v.to_string().into_bytes(),
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockOptions;

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
        assert_eq!(events[6], DONE);
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
}
