//! OpenAI wire format, written from the public API reference:
//! chat completions (with tool calls), legacy completions, embeddings,
//! models and errors. Azure OpenAI reuses it with a deployment name
//! (see [`super::azure`]).

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{self, json_ok, json_reply, Ctx, Limit, Reply, Stop};
use super::text;

#[path = "openai_chat.rs"]
mod chat;
pub use chat::chat;

pub fn route(method: &str, path: &str, body: &[u8], cx: &Ctx<'_>) -> Reply {
    let full_path = path;
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("POST", "/v1/chat/completions") => chat(body, cx, None),
        ("POST", "/v1/completions") => completions(body, cx, None),
        ("POST", "/v1/embeddings") => embeddings(body, cx, None),
        ("GET", "/v1/models") => models(cx),
        ("GET", "/healthz") => json_ok(json!({"status": "ok"})),
        // Large bodies both ways, for passthrough routes.
        ("POST", "/v1/files") => json_ok(json!({"object": "file", "bytes": body.len()})),
        ("GET", "/v1/files/blob/content") => blob(full_path),
        (_, "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings" | "/v1/models") => {
            error(405, &format!("Method {method} not allowed"), None)
        }
        _ => error(404, &format!("Unknown path {path}"), None),
    }
}

/// `size` bytes (from the query), e.g. `?size=1048576`.
fn blob(path: &str) -> Reply {
    let size = path
        .split_once("size=")
        .and_then(|(_, v)| v.split('&').next())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(256 << 20);
    Reply::Json {
        status: 200,
        body: vec![b'x'; size],
        headers: Vec::new(),
    }
}

/// An error in OpenAI's shape with the type OpenAI uses for that status.
pub fn error(status: u16, message: &str, retry_after: Option<u64>) -> Reply {
    error_with(status, message, None, None, retry_after)
}

/// Like [`error`], naming the offending parameter and a specific code.
pub fn error_with(
    status: u16,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
    retry_after: Option<u64>,
) -> Reply {
    let (kind, default_code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => ("permission_error", Value::Null),
        404 => ("invalid_request_error", json!("not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        500..=599 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    let code = code.map_or(default_code, |c| json!(c));
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
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

/// Mid-stream error event for a `status=` fault after some tokens.
pub fn stream_error(code: u16) -> Vec<u8> {
    format!(
        "data: {{\"error\":{{\"message\":\"Injected fault: status {code}\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}\n\n"
    )
    .into_bytes()
}

pub const MALFORMED: &[u8] = b"data: {\"choices\": [{\"delta\": {\"content\n\nevent\x00: ???\n\n";
pub const TERMINAL: &[u8] = b"data: [DONE]\n\n";
pub const TRUNCATED: &[u8] = b"data: {\"choices\":[{\"delta\":";

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn bad_request(e: serde_json::Error) -> Reply {
    error(400, &format!("Invalid request body: {e}"), None)
}

fn missing(param: &str) -> Reply {
    error_with(
        400,
        &format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
        None,
    )
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion})
}

pub fn sse(v: &Value) -> Vec<u8> {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

fn stops(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Value,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    stop: Option<Value>,
}

pub fn completions(body: &[u8], cx: &Ctx<'_>, deployment: Option<&str>) -> Reply {
    let req: CompletionRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let model = match (deployment, &req.model) {
        (Some(d), _) => d.to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => return missing("model"),
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
    let g = common::generate(
        cx.controls,
        Some(&prompt),
        None,
        req.max_tokens,
        Limit::Exceeded,
        &stops(req.stop.as_ref()),
    );
    let finish = if g.stop == Stop::MaxTokens {
        "length"
    } else {
        "stop"
    };
    let u = usage(text::estimate_tokens(prompt.len()), g.tokens.len() as u64);
    let id = format!("cmpl-mock{}", cx.id);
    if !req.stream {
        return json_ok(json!({
            "id": id, "object": "text_completion", "created": cx.created, "model": model,
            "choices": [{"text": g.tokens.concat(), "index": 0, "logprobs": null,
                         "finish_reason": finish}],
            "usage": u,
        }));
    }
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let chunk = |text: &str, finish: Value| {
        sse(
            &json!({"id": id, "object": "text_completion", "created": cx.created,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]}),
        )
    };
    let mut events: Vec<Vec<u8>> = g.tokens.iter().map(|t| chunk(t, Value::Null)).collect();
    events.push(chunk("", json!(finish)));
    if include_usage {
        events.push(sse(
            &json!({"id": id, "object": "text_completion", "created": cx.created,
            "model": model, "choices": [], "usage": u}),
        ));
    }
    events.push(TERMINAL.to_vec());
    Reply::Stream {
        events,
        first_content: 0,
    }
}

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: Option<String>,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
}

pub fn embeddings(body: &[u8], cx: &Ctx<'_>, deployment: Option<&str>) -> Reply {
    let req: EmbeddingRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let model = match (deployment, &req.model) {
        (Some(d), _) => d.to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => return missing("model"),
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
            let v = common::vector(s, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json_ok(json!({"object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}))
}

fn models(cx: &Ctx<'_>) -> Reply {
    let data: Vec<Value> = cx
        .state
        .options
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "sluice-mock"}))
        .collect();
    json_reply(200, &json!({"object": "list", "data": data}))
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
