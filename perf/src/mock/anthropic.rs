//! Anthropic Messages wire format, written from the public API reference:
//! `POST /v1/messages` (JSON and SSE), `POST /v1/messages/count_tokens`,
//! `x-api-key` + `anthropic-version` headers and the `{"type":"error"}` shape.

use serde_json::{json, Value};

use super::common::{self, json_ok, json_reply, Ctx, Limit, Reply, Stop};
use super::tools::{self, Plan};
use crate::http1;

#[path = "anthropic_request.rs"]
mod request;

pub fn admit(key: Option<&str>, headers: &[httparse::Header<'_>]) -> Option<Reply> {
    if let Some(k) = key {
        match http1::header(headers, "x-api-key") {
            None => return Some(error(401, "x-api-key header is required", None)),
            Some(v) if v != k.as_bytes() => return Some(error(401, "invalid x-api-key", None)),
            Some(_) => {}
        }
    }
    // The API refuses requests that do not pin a version, key or not.
    if http1::header(headers, "anthropic-version").is_none() {
        return Some(error(400, "anthropic-version: header is required", None));
    }
    None
}

pub fn route(method: &str, path: &str, body: &[u8], cx: &Ctx<'_>) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("POST", "/v1/messages") => messages(body, cx),
        ("POST", "/v1/messages/count_tokens") => count_tokens(body),
        (_, "/v1/messages" | "/v1/messages/count_tokens") => {
            error(405, &format!("Method {method} not allowed"), None)
        }
        _ => error(404, &format!("Not found: {path}"), None),
    }
}

/// The error `type` Anthropic documents for each status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

fn error_body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

pub fn error(status: u16, message: &str, retry_after: Option<u64>) -> Reply {
    let mut reply = json_reply(status, &error_body(status, message));
    if let (Some(s), Reply::Json { headers, .. }) = (retry_after, &mut reply) {
        headers.push(("retry-after", s.to_string()));
    }
    reply
}

fn event(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

pub fn stream_error(code: u16) -> Vec<u8> {
    event(
        "error",
        &error_body(code, &format!("Injected fault: status {code}")),
    )
}

pub const MALFORMED: &[u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\n\n";
pub const TERMINAL: &[u8] = b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
pub const TRUNCATED: &[u8] =
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":";

fn count_tokens(body: &[u8]) -> Reply {
    match request::parse(body, false) {
        Ok(req) => json_ok(json!({"input_tokens": req.input_tokens})),
        Err(msg) => error(400, &msg, None),
    }
}

fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "output_tokens": output,
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

fn messages(body: &[u8], cx: &Ctx<'_>) -> Reply {
    let req = match request::parse(body, true) {
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
        Err(msg) => return error(400, &format!("tool_choice: {msg}"), None),
    };
    let msg = Message {
        id: format!("msg_mock{:016}", cx.id),
        model: req.model.clone(),
        input: req.input_tokens,
    };
    if let Plan::Call { name, args } = plan {
        let tool_id = format!("toolu_mock{:016}", cx.id);
        return msg.tool_use(&tool_id, &name, &args, req.stream);
    }
    let fixed = match &plan {
        Plan::ToolResult(t) => Some(t.as_str()),
        _ => None,
    };
    let g = common::generate(
        cx.controls,
        Some(&req.last_user),
        fixed,
        Some(req.max_tokens),
        Limit::Reached,
        &req.stop_sequences,
    );
    let (stop_reason, stop_sequence) = match g.stop {
        Stop::End => ("end_turn", Value::Null),
        Stop::MaxTokens => ("max_tokens", Value::Null),
        Stop::Sequence(s) => ("stop_sequence", Value::String(s)),
    };
    let output = g.tokens.len() as u64;
    if !req.stream {
        let content = json!([{"type": "text", "text": g.tokens.concat()}]);
        return json_ok(msg.full(content, stop_reason, stop_sequence, output));
    }
    let deltas = g
        .tokens
        .iter()
        .map(|t| json!({"type": "text_delta", "text": t}))
        .collect();
    msg.stream(
        json!({"type": "text", "text": ""}),
        deltas,
        stop_reason,
        stop_sequence,
        output,
    )
}

/// Fixed facts of one response, shared by its JSON and stream shapes.
struct Message {
    id: String,
    model: String,
    input: u64,
}

impl Message {
    fn full(&self, content: Value, stop_reason: &str, stop_sequence: Value, output: u64) -> Value {
        json!({"id": self.id, "type": "message", "role": "assistant", "model": self.model,
               "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
               "usage": usage(self.input, output)})
    }

    fn tool_use(&self, tool_id: &str, name: &str, args: &Value, stream: bool) -> Reply {
        let args_json = args.to_string();
        let output = tools::call_tokens(name, &args_json);
        if !stream {
            let content = json!([{"type": "tool_use", "id": tool_id, "name": name, "input": args}]);
            return json_ok(self.full(content, "tool_use", Value::Null, output));
        }
        let deltas = tools::pieces(&args_json)
            .into_iter()
            .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
            .collect();
        self.stream(
            json!({"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
            deltas,
            "tool_use",
            Value::Null,
            output,
        )
    }

    /// The documented event sequence for a single content block.
    fn stream(
        &self,
        block: Value,
        deltas: Vec<Value>,
        stop_reason: &str,
        stop_sequence: Value,
        output: u64,
    ) -> Reply {
        let start = json!({"id": self.id, "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(self.input, 1)});
        let mut events = vec![
            event(
                "message_start",
                &json!({"type": "message_start", "message": start}),
            ),
            event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": block}),
            ),
            event("ping", &json!({"type": "ping"})),
        ];
        let first_content = events.len();
        for d in deltas {
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0, "delta": d}),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": {"output_tokens": output}}),
        ));
        events.push(TERMINAL.to_vec());
        Reply::Stream {
            events,
            first_content,
        }
    }
}
