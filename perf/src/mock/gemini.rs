//! Google Gemini (Generative Language API) wire format, written from the
//! public API reference: `models/{model}:generateContent`,
//! `:streamGenerateContent` (`?alt=sse`, CRLF-framed events like Google's
//! servers), `:countTokens`, `:embedContent`, `:batchEmbedContents`, model
//! listing, `x-goog-api-key` / `?key=` auth and the `google.rpc.Status` error shape.

use serde_json::{json, Value};

use super::common::{self, json_ok, json_reply, Ctx, Limit, Reply, Stop};
use super::format::query_param;
use super::text;
use super::tools::{self, Plan};
use crate::http1;

#[path = "gemini_request.rs"]
mod request;
use request::get;

pub fn admit(key: Option<&str>, headers: &[httparse::Header<'_>], path: &str) -> Option<Reply> {
    let key = key?;
    let ok = http1::header(headers, "x-goog-api-key").is_some_and(|v| v == key.as_bytes())
        || query_param(path, "key") == Some(key);
    (!ok).then(|| error(401, "API key not valid. Please pass a valid API key.", None))
}

pub fn route(method: &str, path: &str, body: &[u8], cx: &Ctx<'_>) -> Reply {
    let bare = path.split('?').next().unwrap_or(path);
    let rest = bare
        .strip_prefix("/v1beta/")
        .or_else(|| bare.strip_prefix("/v1/"))
        .unwrap_or("");
    if rest == "models" && method == "GET" {
        return list_models(cx);
    }
    let Some(name) = rest.strip_prefix("models/") else {
        return not_found(bare);
    };
    let Some((model, op)) = name.rsplit_once(':') else {
        return match method {
            "GET" => get_model(name, cx),
            _ => not_found(bare),
        };
    };
    if method != "POST" || model.is_empty() {
        return not_found(bare);
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("Invalid JSON payload received. {e}"), None),
    };
    let sse = query_param(path, "alt") == Some("sse");
    match op {
        "generateContent" => generate(model, &body, cx, None),
        "streamGenerateContent" => generate(model, &body, cx, Some(sse)),
        "countTokens" => count_tokens(&body),
        "embedContent" => match embed_one(&body, cx) {
            Ok(values) => json_ok(json!({"embedding": {"values": values}})),
            Err(msg) => error(400, &msg, None),
        },
        "batchEmbedContents" => batch_embed(model, &body, cx),
        _ => not_found(bare),
    }
}

fn not_found(path: &str) -> Reply {
    error(404, &format!("Method not found: {path}"), None)
}

/// The canonical `google.rpc.Code` name for an HTTP status.
fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if (400..500).contains(&code) => "FAILED_PRECONDITION",
        _ if (500..600).contains(&code) => "INTERNAL",
        _ => "UNKNOWN",
    }
}

fn error_body(code: u16, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status_name(code)}})
}

pub fn error(code: u16, message: &str, retry_after: Option<u64>) -> Reply {
    let mut reply = json_reply(code, &error_body(code, message));
    if let (Some(s), Reply::Json { headers, .. }) = (retry_after, &mut reply) {
        headers.push(("retry-after", s.to_string()));
    }
    reply
}

fn sse(v: &Value) -> Vec<u8> {
    format!("data: {v}\r\n\r\n").into_bytes()
}

pub fn stream_error(code: u16) -> Vec<u8> {
    sse(&error_body(code, &format!("Injected fault: status {code}")))
}

pub const MALFORMED: &[u8] = b"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\r\n\r\n";
pub const TRUNCATED: &[u8] = b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":";

fn count_tokens(body: &Value) -> Reply {
    // Either bare `contents` or a whole `generateContentRequest`.
    let inner = get(body, "generateContentRequest").unwrap_or(body);
    match request::parse(inner) {
        Ok(req) => json_ok(json!({"totalTokens": req.prompt_tokens})),
        Err(msg) => error(
            400,
            &msg.replace("GenerateContentRequest", "CountTokensRequest"),
            None,
        ),
    }
}

/// `stream`: `None` for `generateContent`, `Some(sse)` for the streaming
/// method (without `alt=sse` Google streams one JSON array instead).
fn generate(model: &str, body: &Value, cx: &Ctx<'_>, stream: Option<bool>) -> Reply {
    let req = match request::parse(body) {
        Ok(r) => r,
        Err(msg) => return error(400, &msg, None),
    };
    let plan = match tools::plan(
        &req.tools,
        &req.choice,
        req.tool_result.clone(),
        &req.last_user,
    ) {
        Ok(p) => p,
        Err(msg) => return error(400, &msg, None),
    };
    let resp = Response {
        model: model.to_string(),
        id: format!("mock{:016}", cx.id),
        prompt: req.prompt_tokens,
        candidates: req.candidates,
    };
    if let Plan::Call { name, args } = &plan {
        let part = json!({"functionCall": {"name": name, "args": args}});
        let output = tools::call_tokens(name, &args.to_string());
        let whole = resp.chunk(&part, Some(("STOP", output)));
        return match stream {
            None => json_ok(whole),
            Some(true) => Reply::Stream {
                events: vec![sse(&whole)],
                first_content: 0,
            },
            Some(false) => json_ok(json!([whole])),
        };
    }
    let structured = match (&plan, &req.json) {
        (Plan::ToolResult(_), _) | (_, None) => None,
        (_, Some(schema)) => {
            let base = if cx.controls.echo {
                req.last_user.clone()
            } else {
                text::generated(cx.controls.tokens).concat()
            };
            Some(match schema {
                Some(s) => tools::arguments(s, &base).to_string(),
                None => Value::String(base).to_string(),
            })
        }
    };
    let fixed = match &plan {
        Plan::ToolResult(t) => Some(t.as_str()),
        _ => structured.as_deref(),
    };
    let g = common::generate(
        cx.controls,
        Some(&req.last_user),
        fixed,
        req.max,
        Limit::Reached,
        &req.stops,
    );
    let finish = if g.stop == Stop::MaxTokens {
        "MAX_TOKENS"
    } else {
        "STOP"
    };
    let output = g.tokens.len() as u64;
    let Some(sse_framing) = stream else {
        return json_ok(resp.chunk(&json!({"text": g.tokens.concat()}), Some((finish, output))));
    };
    let n = g.tokens.len().max(1);
    let chunks: Vec<Value> = (0..n)
        .map(|i| {
            let t = g.tokens.get(i).map_or("", String::as_str);
            let last = (i + 1 == n).then_some((finish, output));
            resp.chunk(&json!({"text": t}), last)
        })
        .collect();
    if !sse_framing {
        return json_ok(Value::Array(chunks));
    }
    Reply::Stream {
        events: chunks.iter().map(sse).collect(),
        first_content: 0,
    }
}

struct Response {
    model: String,
    id: String,
    prompt: u64,
    candidates: usize,
}

impl Response {
    /// One `GenerateContentResponse` holding `part`; `last` adds the finish
    /// reason and usage, which Google sends once the turn is complete.
    fn chunk(&self, part: &Value, last: Option<(&str, u64)>) -> Value {
        let candidates: Vec<Value> = (0..self.candidates)
            .map(|i| {
                let mut c = json!({"content": {"parts": [part], "role": "model"}, "index": i});
                if let Some((finish, _)) = last {
                    c["finishReason"] = json!(finish);
                }
                c
            })
            .collect();
        let mut v = json!({"candidates": candidates, "modelVersion": self.model,
                           "responseId": self.id});
        if let Some((_, output)) = last {
            let out = output * self.candidates as u64;
            v["usageMetadata"] = json!({"promptTokenCount": self.prompt,
                "candidatesTokenCount": out, "totalTokenCount": self.prompt + out,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt}]});
        }
        v
    }
}

/// The vector for one `EmbedContentRequest`.
fn embed_one(req: &Value, cx: &Ctx<'_>) -> Result<Vec<f32>, String> {
    let Some(content) = get(req, "content") else {
        return Err("* EmbedContentRequest.content: content is not specified".into());
    };
    let parts = get(content, "parts").and_then(Value::as_array);
    let Some(parts) = parts.filter(|p| !p.is_empty()) else {
        return Err("* EmbedContentRequest.content.parts: must not be empty".into());
    };
    let text: String = parts
        .iter()
        .filter_map(|p| get(p, "text").and_then(Value::as_str))
        .collect();
    let dims = match get(req, "outputDimensionality") {
        None => cx.state.options.dimensions,
        Some(d) => match d.as_u64() {
            Some(n @ 1..=8192) => n as usize,
            _ => {
                return Err(
                    "* EmbedContentRequest.output_dimensionality: must be between 1 and 8192"
                        .into(),
                )
            }
        },
    };
    Ok(common::vector(&text, dims.max(1)))
}

fn batch_embed(model: &str, body: &Value, cx: &Ctx<'_>) -> Reply {
    let Some(requests) = get(body, "requests").and_then(Value::as_array) else {
        return error(
            400,
            "* BatchEmbedContentsRequest.requests: requests is not specified",
            None,
        );
    };
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let named = get(r, "model").and_then(Value::as_str);
        if named.is_some_and(|m| m.strip_prefix("models/").unwrap_or(m) != model) {
            let msg = format!("* BatchEmbedContentsRequest.requests[{i}].model: model must match the model in the URL (models/{model})");
            return error(400, &msg, None);
        }
        match embed_one(r, cx) {
            Ok(values) => out.push(json!({"values": values})),
            Err(msg) => {
                return error(
                    400,
                    &msg.replace(
                        "EmbedContentRequest",
                        &format!("BatchEmbedContentsRequest.requests[{i}]"),
                    ),
                    None,
                )
            }
        }
    }
    json_ok(json!({"embeddings": out}))
}

fn model_info(name: &str) -> Value {
    json!({"name": format!("models/{name}"), "baseModelId": name, "version": "001",
        "displayName": name, "description": "Sluice mock model",
        "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "embedContent",
                                       "batchEmbedContents"]})
}

fn list_models(cx: &Ctx<'_>) -> Reply {
    let models: Vec<Value> = cx
        .state
        .options
        .models
        .iter()
        .map(|m| model_info(m))
        .collect();
    json_ok(json!({"models": models}))
}

fn get_model(name: &str, cx: &Ctx<'_>) -> Reply {
    if cx.state.options.models.iter().any(|m| m == name) {
        return json_ok(model_info(name));
    }
    error(
        404,
        &format!(
            "models/{name} is not found for API version v1beta, or is not supported for getModel."
        ),
        None,
    )
}
