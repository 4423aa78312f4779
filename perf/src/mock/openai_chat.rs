//! OpenAI chat completions, including tool calls; Azure differs only in
//! the model name and its content-filter annotations.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, error, error_with, missing, sse, stops, usage, StreamOptions, TERMINAL};
use crate::mock::common::{self, json_ok, Ctx, Limit, Reply, Stop};
use crate::mock::text;
use crate::mock::tools::{self, Choice, Plan, Tool};

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    stop: Option<Value>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
}

fn role(m: &Value) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

fn parse_tools(req: &ChatRequest) -> Result<(Vec<Tool>, Choice), Reply> {
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        let f = t.get("function");
        let Some(name) = f.and_then(|f| f.get("name")).and_then(Value::as_str) else {
            return Err(missing(&format!("tools[{i}].function.name")));
        };
        let schema = f
            .and_then(|f| f.get("parameters"))
            .cloned()
            .unwrap_or(Value::Null);
        tools.push(Tool {
            name: name.to_string(),
            schema,
        });
    }
    let choice = match &req.tool_choice {
        None => Choice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Choice::Auto,
            "none" => Choice::None,
            "required" => Choice::Any,
            other => {
                return Err(error_with(
                    400,
                    &format!("Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."),
                    Some("tool_choice"),
                    Some("invalid_value"),
                    None,
                ))
            }
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(n) => Choice::Named(n.to_string()),
            None => return Err(missing("tool_choice.function.name")),
        },
    };
    if req.tool_choice.is_some() && tools.is_empty() {
        return Err(error_with(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            Some("tool_choice"),
            None,
            None,
        ));
    }
    Ok((tools, choice))
}

/// Chat completions; `deployment` is set for Azure, whose URL names the model.
pub fn chat(body: &[u8], cx: &Ctx<'_>, deployment: Option<&str>) -> Reply {
    let req: ChatRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let model = match (deployment, &req.model) {
        (Some(d), _) => d.to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => return missing("model"),
    };
    if req.messages.is_empty() {
        return error(400, "'messages' must contain at least one message", None);
    }
    let (tools, choice) = match parse_tools(&req) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut prompt_len: usize = req
        .messages
        .iter()
        .map(|m| m.get("content").map(common::text_of).map_or(0, |t| t.len()))
        .sum();
    if let Some(t) = &req.tools {
        prompt_len += Value::from(t.clone()).to_string().len();
    }
    let prompt = text::estimate_tokens(prompt_len);
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| role(m) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(common::text_of);
    let tool_result = req
        .messages
        .last()
        .filter(|m| role(m) == Some("tool"))
        .map(|m| m.get("content").map(common::text_of).unwrap_or_default());
    let plan = match tools::plan(
        &tools,
        &choice,
        tool_result,
        last_user.as_deref().unwrap_or(""),
    ) {
        Ok(p) => p,
        Err(msg) => return error_with(400, &msg, Some("tool_choice"), None, None),
    };
    let c = Chat {
        id: format!("chatcmpl-mock{}", cx.id),
        model,
        created: cx.created,
        azure: deployment.is_some(),
        prompt,
        include_usage: req.stream_options.as_ref().is_some_and(|o| o.include_usage),
    };
    if let Plan::Call { name, args } = plan {
        return tool_call(&c, cx, &name, &args.to_string(), req.stream);
    }
    let fixed = match &plan {
        Plan::ToolResult(t) => Some(t.as_str()),
        _ => None,
    };
    let max = req.max_completion_tokens.or(req.max_tokens);
    let g = common::generate(
        cx.controls,
        last_user.as_deref(),
        fixed,
        max,
        Limit::Exceeded,
        &stops(req.stop.as_ref()),
    );
    let finish = if g.stop == Stop::MaxTokens {
        "length"
    } else {
        "stop"
    };
    let completion = g.tokens.len() as u64;
    if !req.stream {
        let message = json!({"role": "assistant", "content": g.tokens.concat(), "refusal": null});
        return json_ok(c.completion(message, finish, completion));
    }
    let mut events = c.stream_head();
    let first_content = events.len() + 1;
    events.push(c.chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    ));
    for t in &g.tokens {
        events.push(c.chunk(json!({"content": t}), Value::Null));
    }
    c.stream_tail(&mut events, finish, completion);
    Reply::Stream {
        events,
        first_content,
    }
}

/// Fixed facts of one chat response, shared by its JSON and stream shapes.
struct Chat {
    id: String,
    model: String,
    created: u64,
    azure: bool,
    prompt: u64,
    include_usage: bool,
}

const FINGERPRINT: &str = "fp_sluice_mock";

/// Azure's content-filter annotations, all clear.
fn filter_results() -> Value {
    let clear = json!({"filtered": false, "severity": "safe"});
    json!({"hate": clear, "self_harm": clear, "sexual": clear, "violence": clear})
}

impl Chat {
    fn completion(&self, message: Value, finish: &str, completion: u64) -> Value {
        let mut choice = json!({"index": 0, "message": message, "logprobs": null,
                                "finish_reason": finish});
        let mut v = json!({
            "id": self.id, "object": "chat.completion", "created": self.created,
            "model": self.model, "system_fingerprint": FINGERPRINT,
            "usage": usage(self.prompt, completion),
        });
        if self.azure {
            choice["content_filter_results"] = filter_results();
            v["prompt_filter_results"] =
                json!([{"prompt_index": 0, "content_filter_results": filter_results()}]);
        }
        v["choices"] = json!([choice]);
        v
    }

    fn chunk(&self, delta: Value, finish: Value) -> Vec<u8> {
        let mut v = json!({"id": self.id, "object": "chat.completion.chunk",
            "created": self.created, "model": self.model, "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        sse(&v)
    }

    /// Azure opens every stream with an anonymous chunk that carries only the
    /// prompt filter results and no choices; clients must tolerate it.
    fn stream_head(&self) -> Vec<Vec<u8>> {
        if !self.azure {
            return Vec::new();
        }
        vec![sse(
            &json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": [{"prompt_index": 0,
                "content_filter_results": filter_results()}]}),
        )]
    }

    fn stream_tail(&self, events: &mut Vec<Vec<u8>>, finish: &str, completion: u64) {
        events.push(self.chunk(json!({}), json!(finish)));
        if self.include_usage {
            events.push(sse(
                &json!({"id": self.id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.model,
                "system_fingerprint": FINGERPRINT, "choices": [],
                "usage": usage(self.prompt, completion)}),
            ));
        }
        events.push(TERMINAL.to_vec());
    }
}

fn tool_call(c: &Chat, cx: &Ctx<'_>, name: &str, args: &str, stream: bool) -> Reply {
    let call_id = format!("call_mock{}", cx.id);
    let completion = tools::call_tokens(name, args);
    if !stream {
        let message = json!({"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [{"id": call_id, "type": "function",
                            "function": {"name": name, "arguments": args}}]});
        return json_ok(c.completion(message, "tool_calls", completion));
    }
    let mut events = c.stream_head();
    events.push(c.chunk(
        json!({"role": "assistant", "content": null, "refusal": null,
               "tool_calls": [{"index": 0, "id": call_id, "type": "function",
                               "function": {"name": name, "arguments": ""}}]}),
        Value::Null,
    ));
    let first_content = events.len();
    for piece in tools::pieces(args) {
        events.push(c.chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    c.stream_tail(&mut events, "tool_calls", completion);
    Reply::Stream {
        events,
        first_content,
    }
}
