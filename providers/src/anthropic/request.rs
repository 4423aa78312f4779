//! Anthropic Messages requests ⇄ canonical.

use serde_json::{json, Map, Value};

use crate::canonical::*;
use crate::codec::{EncodeOptions, Encoded};
use crate::error::CodecError;
use crate::format::Format;
use crate::json::*;

const KNOWN: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
];

pub fn decode(body: &[u8]) -> Result<ChatRequest, CodecError> {
    let o = parse_object(body)?;
    let mut req = ChatRequest::new(Format::Anthropic, req_str(&o, "model", "")?);
    req.max_tokens = Some(
        opt_u32(&o, "max_tokens", "")?
            .ok_or_else(|| CodecError::invalid("max_tokens: Field required"))?,
    );
    match o.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => req.messages.push(Message::text(Role::System, s.clone())),
        Some(Value::Array(blocks)) => {
            let mut text = String::new();
            for (i, b) in blocks.iter().enumerate() {
                let path = format!("system[{i}]");
                let b = as_obj(b, &path)?;
                text.push_str(req_str(b, "text", &path)?);
            }
            req.messages.push(Message::text(Role::System, text));
        }
        Some(_) => {
            return Err(CodecError::invalid(
                "system: must be a string or an array of text blocks",
            ))
        }
    }
    let messages = opt_array(&o, "messages", "")?
        .ok_or_else(|| CodecError::invalid("messages: Field required"))?;
    for (i, m) in messages.iter().enumerate() {
        decode_message(m, &format!("messages[{i}]"), &mut req.messages)?;
    }
    if let Some(tools) = opt_array(&o, "tools", "")? {
        for (i, t) in tools.iter().enumerate() {
            let path = format!("tools[{i}]");
            let t = as_obj(t, &path)?;
            if let Some(kind) = opt_str(t, "type", &path)? {
                if kind != "custom" {
                    return Err(CodecError::Unsupported(format!(
                        "server tool '{kind}' at '{path}' needs an Anthropic upstream"
                    )));
                }
            }
            req.tools.push(Tool {
                name: req_str(t, "name", &path)?.to_string(),
                description: opt_str(t, "description", &path)?.map(str::to_string),
                parameters: t
                    .get("input_schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict: None,
            });
        }
    }
    if let Some(tc) = opt_obj(&o, "tool_choice", "")? {
        req.tool_choice = Some(match req_str(tc, "type", "tool_choice")? {
            "auto" => ToolChoice::Auto,
            "any" => ToolChoice::Required,
            "none" => ToolChoice::None,
            "tool" => ToolChoice::Named(req_str(tc, "name", "tool_choice")?.to_string()),
            other => {
                return Err(CodecError::invalid(format!(
                    "tool_choice.type: must be auto, any, tool or none, not '{other}'"
                )))
            }
        });
        if opt_bool(tc, "disable_parallel_tool_use", "tool_choice")? == Some(true) {
            req.parallel_tool_calls = Some(false);
        }
    }
    req.temperature = opt_f64(&o, "temperature", "")?;
    req.top_p = opt_f64(&o, "top_p", "")?;
    req.top_k = opt_u32(&o, "top_k", "")?;
    req.stop = strings(&o, "stop_sequences", "")?;
    req.stream = opt_bool(&o, "stream", "")?.unwrap_or(false);
    // Anthropic streams always end with usage.
    req.include_usage = req.stream;
    if let Some(md) = opt_obj(&o, "metadata", "")? {
        req.user = opt_str(md, "user_id", "metadata")?.map(str::to_string);
    }
    for (k, v) in o {
        if !KNOWN.contains(&k.as_str()) {
            req.extra.insert(k, v);
        }
    }
    Ok(req)
}

fn decode_message(v: &Value, path: &str, out: &mut Vec<Message>) -> Result<(), CodecError> {
    let m = as_obj(v, path)?;
    let role = match req_str(m, "role", path)? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        other => {
            return Err(CodecError::invalid(format!(
                "{path}.role: must be user or assistant, not '{other}'"
            )))
        }
    };
    let mut msg = Message::new(role, Vec::new());
    let blocks = match m.get("content") {
        Some(Value::String(s)) => {
            msg.content.push(Part::Text(s.clone()));
            out.push(msg);
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(CodecError::invalid(format!(
                "{path}.content: must be a string or an array of content blocks"
            )))
        }
    };
    for (i, b) in blocks.iter().enumerate() {
        let bpath = format!("{path}.content[{i}]");
        let b = as_obj(b, &bpath)?;
        match req_str(b, "type", &bpath)? {
            "text" => msg
                .content
                .push(Part::Text(req_str(b, "text", &bpath)?.to_string())),
            "image" => msg.content.push(Part::Image(image(b, &bpath)?)),
            "tool_use" => msg.tool_calls.push(ToolCall {
                id: req_str(b, "id", &bpath)?.to_string(),
                name: req_str(b, "name", &bpath)?.to_string(),
                arguments: b.get("input").map_or_else(|| "{}".into(), Value::to_string),
            }),
            "tool_result" => {
                let mut tool = Message::new(Role::Tool, Vec::new());
                tool.tool_call_id = Some(req_str(b, "tool_use_id", &bpath)?.to_string());
                tool.is_error = opt_bool(b, "is_error", &bpath)?.unwrap_or(false);
                match b.get("content") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => tool.content.push(Part::Text(s.clone())),
                    Some(Value::Array(parts)) => {
                        for (j, p) in parts.iter().enumerate() {
                            let ppath = format!("{bpath}.content[{j}]");
                            let p = as_obj(p, &ppath)?;
                            match req_str(p, "type", &ppath)? {
                                "text" => tool
                                    .content
                                    .push(Part::Text(req_str(p, "text", &ppath)?.to_string())),
                                "image" => tool.content.push(Part::Image(image(p, &ppath)?)),
                                other => {
                                    return Err(CodecError::Unsupported(format!(
                                        "block type '{other}' at '{ppath}' cannot be translated"
                                    )))
                                }
                            }
                        }
                    }
                    Some(_) => {
                        return Err(CodecError::invalid(format!(
                            "{bpath}.content: must be a string or an array"
                        )))
                    }
                }
                out.push(tool);
            }
            // Reasoning traces are the model's own; other formats cannot replay them.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(CodecError::Unsupported(format!(
                    "block type '{other}' at '{bpath}' cannot be translated"
                )))
            }
        }
    }
    if !msg.content.is_empty() || !msg.tool_calls.is_empty() {
        out.push(msg);
    }
    Ok(())
}

fn image(b: &Obj, path: &str) -> Result<Image, CodecError> {
    let spath = format!("{path}.source");
    let s = opt_obj(b, "source", path)?
        .ok_or_else(|| CodecError::invalid(format!("{spath}: Field required")))?;
    match req_str(s, "type", &spath)? {
        "base64" => Ok(Image::Base64 {
            media_type: req_str(s, "media_type", &spath)?.to_string(),
            data: req_str(s, "data", &spath)?.to_string(),
        }),
        "url" => Ok(Image::Url {
            url: req_str(s, "url", &spath)?.to_string(),
            detail: None,
        }),
        other => Err(CodecError::Unsupported(format!(
            "image source type '{other}' at '{spath}' cannot be translated"
        ))),
    }
}

fn image_block(img: &Image) -> Value {
    match img {
        Image::Url { url, .. } => json!({"type": "image", "source": {"type": "url", "url": url}}),
        Image::Base64 { media_type, data } => {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }
    }
}

fn blocks(parts: &[Part]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) if t.is_empty() => None,
            Part::Text(t) => Some(json!({"type": "text", "text": t})),
            Part::Image(img) => Some(image_block(img)),
        })
        .collect()
}

pub fn encode(req: &ChatRequest, opts: &EncodeOptions<'_>) -> Result<Encoded, CodecError> {
    match super::text_request::encode(req, opts) {
        Some(body) => Ok(Encoded {
            body,
            dropped: dropped(req),
        }),
        None => encode_general(req, opts),
    }
}

/// Request fields Anthropic has no place for.
fn dropped(req: &ChatRequest) -> Vec<String> {
    let mut dropped = Vec::new();
    if req.n.is_some_and(|n| n > 1) {
        dropped.push("n".into());
    }
    for (name, present) in [
        ("seed", req.seed.is_some()),
        ("presence_penalty", req.presence_penalty.is_some()),
        ("frequency_penalty", req.frequency_penalty.is_some()),
        ("metadata", req.metadata.is_some()),
        (
            "response_format",
            !matches!(req.response_format, None | Some(ResponseFormat::Text)),
        ),
    ] {
        if present {
            dropped.push(name.into());
        }
    }
    if req.origin != Format::Anthropic {
        dropped.extend(req.extra.keys().cloned());
    }
    dropped
}

/// Adds a message's content as a turn; consecutive turns of one role
/// merge, since Anthropic wants them alternating. Empty content adds none.
pub(super) fn push_turn<T>(
    turns: &mut Vec<(&'static str, Vec<T>)>,
    role: &'static str,
    content: Vec<T>,
) {
    if content.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((r, b)) if *r == role => b.extend(content),
        _ => turns.push((role, content)),
    }
}

/// Anthropic wants the user to speak first: a placeholder turn if not.
pub(super) fn user_first<T>(turns: &mut Vec<(&'static str, Vec<T>)>, placeholder: T) {
    if turns.first().is_some_and(|(r, _)| *r == "assistant") {
        turns.insert(0, ("user", vec![placeholder]));
    }
}

/// Any request, through a `Value` tree.
pub(super) fn encode_general(
    req: &ChatRequest,
    opts: &EncodeOptions<'_>,
) -> Result<Encoded, CodecError> {
    let same = req.origin == Format::Anthropic;
    let mut system = Vec::new();
    // (role, blocks)
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, content) = match m.role {
            Role::System | Role::Developer => {
                system.push(m.joined_text());
                continue;
            }
            Role::User => ("user", blocks(&m.content)),
            Role::Assistant => {
                let mut b = blocks(&m.content);
                for (j, c) in m.tool_calls.iter().enumerate() {
                    let input = arguments_object(
                        &c.arguments,
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    )?;
                    b.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
                }
                ("assistant", b)
            }
            Role::Tool => {
                let mut r = Map::new();
                r.insert("type".into(), json!("tool_result"));
                r.insert(
                    "tool_use_id".into(),
                    json!(m.tool_call_id.as_deref().unwrap_or("")),
                );
                if m.content.iter().any(|p| matches!(p, Part::Image(_))) {
                    r.insert("content".into(), Value::Array(blocks(&m.content)));
                } else {
                    r.insert("content".into(), json!(m.joined_text()));
                }
                if m.is_error {
                    r.insert("is_error".into(), json!(true));
                }
                ("user", vec![Value::Object(r)])
            }
        };
        push_turn(&mut turns, role, content);
    }
    user_first(&mut turns, json!({"type": "text", "text": "..."}));
    let mut o = Map::new();
    o.insert("model".into(), json!(opts.model));
    o.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(opts.default_max_tokens)),
    );
    if !system.is_empty() {
        o.insert("system".into(), json!(system.join("\n\n")));
    }
    o.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect(),
        ),
    );
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    m.insert("description".into(), json!(d));
                }
                m.insert("input_schema".into(), t.parameters.clone());
                Value::Object(m)
            })
            .collect();
        o.insert("tools".into(), Value::Array(tools));
    }
    let mut choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::Named(n)) => Some(json!({"type": "tool", "name": n})),
    };
    if req.parallel_tool_calls == Some(false) && !req.tools.is_empty() {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Some(m) = c.as_object_mut() {
            if m.get("type") != Some(&json!("none")) {
                m.insert("disable_parallel_tool_use".into(), json!(true));
            }
        }
    }
    if let Some(c) = choice {
        if !req.tools.is_empty() || same {
            o.insert("tool_choice".into(), c);
        }
    }
    if let Some(t) = req.temperature {
        o.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        o.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        o.insert("top_k".into(), json!(k));
    }
    if !req.stop.is_empty() {
        o.insert("stop_sequences".into(), json!(req.stop));
    }
    if req.stream {
        o.insert("stream".into(), json!(true));
    }
    if let Some(u) = &req.user {
        o.insert("metadata".into(), json!({"user_id": u}));
    }
    if same {
        for (k, v) in &req.extra {
            o.insert(k.clone(), v.clone());
        }
    }
    Ok(Encoded {
        body: serde_json::to_vec(&Value::Object(o)).unwrap_or_default(),
        dropped: dropped(req),
    })
}
