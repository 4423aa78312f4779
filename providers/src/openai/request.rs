//! OpenAI Chat Completions requests ⇄ canonical.

use serde_json::{json, Map, Value};

use super::fast;
use crate::canonical::*;
use crate::codec::{EncodeOptions, Encoded};
use crate::error::CodecError;
use crate::format::Format;
use crate::json::*;

const KNOWN: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "metadata",
    "stream",
    "stream_options",
];

pub fn decode(body: &[u8]) -> Result<ChatRequest, CodecError> {
    if let Some(fast::Top {
        messages: Some(messages),
        rest,
    }) = fast::top(body)
    {
        return finish(rest, messages);
    }
    decode_fields(body)
}

/// The reference decoder: field by field, with errors that name the field.
pub(super) fn decode_fields(body: &[u8]) -> Result<ChatRequest, CodecError> {
    let mut o = parse_object(body)?;
    req_str(&o, "model", "")?;
    let messages = opt_array(&o, "messages", "")?
        .ok_or_else(|| CodecError::invalid("Missing required parameter: 'messages'"))?
        .iter()
        .enumerate()
        .map(|(i, m)| message(m, &format!("messages[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    o.remove("messages");
    finish(o, messages)
}

/// Which of `KNOWN` the request carries, one bit each: most requests
/// carry a few, and each absent key would cost a map search below.
fn present(o: &Obj) -> u32 {
    const _: () = assert!(KNOWN.len() <= 32, "one bit per known key");
    o.keys()
        .filter_map(|k| KNOWN.iter().position(|x| x == k))
        .fold(0, |m, i| m | 1 << i)
}

/// Everything but the messages, from the request's other top-level keys.
pub(super) fn finish(o: Obj, messages: Vec<Message>) -> Result<ChatRequest, CodecError> {
    let mask = present(&o);
    // Absent keys read as an empty map; present ones from the request.
    let empty = Obj::new();
    let at = |k: &str| match KNOWN.iter().position(|x| *x == k) {
        Some(i) if mask & (1 << i) == 0 => &empty,
        _ => &o,
    };
    let model = req_str(&o, "model", "")?;
    let mut req = ChatRequest::new(Format::OpenAi, model);
    req.messages = messages;
    if let Some(tools) = opt_array(at("tools"), "tools", "")? {
        for (i, t) in tools.iter().enumerate() {
            let path = format!("tools[{i}]");
            let f = opt_obj(as_obj(t, &path)?, "function", &path)?
                .ok_or_else(|| CodecError::invalid(format!("'{path}.function' is required")))?;
            let fpath = format!("{path}.function");
            req.tools.push(Tool {
                name: req_str(f, "name", &fpath)?.to_string(),
                description: opt_str(f, "description", &fpath)?.map(str::to_string),
                parameters: f
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict: opt_bool(f, "strict", &fpath)?,
            });
        }
    }
    req.tool_choice = match at("tool_choice").get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(CodecError::invalid(format!(
                    "'tool_choice' must be auto, none, required or an object, not '{other}'"
                )))
            }
        }),
        Some(Value::Object(c)) => {
            let f = opt_obj(c, "function", "tool_choice")?
                .ok_or_else(|| CodecError::invalid("'tool_choice.function' is required"))?;
            Some(ToolChoice::Named(
                req_str(f, "name", "tool_choice.function")?.to_string(),
            ))
        }
        Some(_) => {
            return Err(CodecError::invalid(
                "'tool_choice' must be a string or an object",
            ))
        }
    };
    req.parallel_tool_calls = opt_bool(at("parallel_tool_calls"), "parallel_tool_calls", "")?;
    if let Some(rf) = opt_obj(at("response_format"), "response_format", "")? {
        req.response_format = Some(match req_str(rf, "type", "response_format")? {
            "text" => ResponseFormat::Text,
            "json_object" => ResponseFormat::JsonObject,
            "json_schema" => {
                let s = opt_obj(rf, "json_schema", "response_format")?.ok_or_else(|| {
                    CodecError::invalid("'response_format.json_schema' is required")
                })?;
                ResponseFormat::JsonSchema {
                    name: opt_str(s, "name", "response_format.json_schema")?
                        .unwrap_or("response")
                        .to_string(),
                    schema: s.get("schema").cloned().unwrap_or(Value::Null),
                    strict: opt_bool(s, "strict", "response_format.json_schema")?,
                }
            }
            other => {
                return Err(CodecError::invalid(format!(
                    "'response_format.type' must be text, json_object or json_schema, not '{other}'"
                )))
            }
        });
    }
    req.temperature = opt_f64(at("temperature"), "temperature", "")?;
    req.top_p = opt_f64(at("top_p"), "top_p", "")?;
    req.top_k = opt_u32(at("top_k"), "top_k", "")?;
    req.max_tokens = match opt_u32(at("max_completion_tokens"), "max_completion_tokens", "")? {
        Some(v) => Some(v),
        None => opt_u32(at("max_tokens"), "max_tokens", "")?,
    };
    req.stop = strings(at("stop"), "stop", "")?;
    req.n = opt_u32(at("n"), "n", "")?;
    req.seed = opt_i64(at("seed"), "seed", "")?;
    req.presence_penalty = opt_f64(at("presence_penalty"), "presence_penalty", "")?;
    req.frequency_penalty = opt_f64(at("frequency_penalty"), "frequency_penalty", "")?;
    req.user = opt_str(at("user"), "user", "")?.map(str::to_string);
    req.metadata = opt_obj(at("metadata"), "metadata", "")?.cloned();
    req.stream = opt_bool(at("stream"), "stream", "")?.unwrap_or(false);
    if let Some(so) = opt_obj(at("stream_options"), "stream_options", "")? {
        req.include_usage = opt_bool(so, "include_usage", "stream_options")?.unwrap_or(false);
    }
    if (mask.count_ones() as usize) < o.len() {
        for (k, v) in o {
            if !KNOWN.contains(&k.as_str()) {
                req.extra.insert(k, v);
            }
        }
    }
    Ok(req)
}

fn message(v: &Value, path: &str) -> Result<Message, CodecError> {
    let m = as_obj(v, path)?;
    let role = match req_str(m, "role", path)? {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        other => {
            return Err(CodecError::invalid(format!(
                "'{path}.role' must be system, developer, user, assistant or tool, not '{other}'"
            )))
        }
    };
    let mut msg = Message::new(role, content(m.get("content"), &format!("{path}.content"))?);
    msg.name = opt_str(m, "name", path)?.map(str::to_string);
    msg.tool_call_id = opt_str(m, "tool_call_id", path)?.map(str::to_string);
    if role == Role::Tool && msg.tool_call_id.is_none() {
        // Legacy `function` role answers by name.
        msg.tool_call_id = msg.name.clone();
    }
    if let Some(calls) = opt_array(m, "tool_calls", path)? {
        for (i, c) in calls.iter().enumerate() {
            let cpath = format!("{path}.tool_calls[{i}]");
            let c = as_obj(c, &cpath)?;
            let f = opt_obj(c, "function", &cpath)?
                .ok_or_else(|| CodecError::invalid(format!("'{cpath}.function' is required")))?;
            msg.tool_calls.push(ToolCall {
                id: req_str(c, "id", &cpath)?.to_string(),
                name: req_str(f, "name", &format!("{cpath}.function"))?.to_string(),
                arguments: opt_str(f, "arguments", &format!("{cpath}.function"))?
                    .unwrap_or("")
                    .to_string(),
            });
        }
    }
    if let Some(r) = opt_str(m, "refusal", path)? {
        msg.content.push(Part::Text(r.to_string()));
    }
    Ok(msg)
}

fn content(v: Option<&Value>, path: &str) -> Result<Vec<Part>, CodecError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| part(p, &format!("{path}[{i}]")))
            .collect(),
        Some(_) => Err(CodecError::invalid(format!(
            "'{path}' must be a string or an array of content parts"
        ))),
    }
}

fn part(v: &Value, path: &str) -> Result<Part, CodecError> {
    let p = as_obj(v, path)?;
    match req_str(p, "type", path)? {
        "text" | "refusal" => Ok(Part::Text(
            opt_str(p, "text", path)?
                .or(opt_str(p, "refusal", path)?)
                .unwrap_or("")
                .to_string(),
        )),
        "image_url" => {
            let (url, detail) = match p.get("image_url") {
                Some(Value::String(u)) => (u.as_str(), None),
                Some(Value::Object(o)) => (
                    req_str(o, "url", &format!("{path}.image_url"))?,
                    opt_str(o, "detail", &format!("{path}.image_url"))?.map(str::to_string),
                ),
                _ => {
                    return Err(CodecError::invalid(format!(
                        "'{path}.image_url' must be an object with a 'url'"
                    )))
                }
            };
            Ok(Part::Image(Image::from_url(url, detail)))
        }
        other => Err(CodecError::Unsupported(format!(
            "content part type '{other}' at '{path}' cannot be translated"
        ))),
    }
}

pub fn encode(req: &ChatRequest, opts: &EncodeOptions<'_>) -> Result<Encoded, CodecError> {
    let same = req.origin == Format::OpenAi;
    let mut dropped = Vec::new();
    let mut o = Map::new();
    o.insert("model".into(), json!(opts.model));
    o.insert(
        "messages".into(),
        Value::Array(req.messages.iter().map(encode_message).collect()),
    );
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    f.insert("description".into(), json!(d));
                }
                f.insert("parameters".into(), t.parameters.clone());
                if let Some(s) = t.strict {
                    f.insert("strict".into(), json!(s));
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        o.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = &req.tool_choice {
        o.insert(
            "tool_choice".into(),
            match tc {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
            },
        );
    }
    put(&mut o, "parallel_tool_calls", req.parallel_tool_calls);
    if let Some(rf) = &req.response_format {
        o.insert(
            "response_format".into(),
            match rf {
                ResponseFormat::Text => json!({"type": "text"}),
                ResponseFormat::JsonObject => json!({"type": "json_object"}),
                ResponseFormat::JsonSchema {
                    name,
                    schema,
                    strict,
                } => {
                    let mut s = Map::new();
                    s.insert("name".into(), json!(name));
                    s.insert("schema".into(), schema.clone());
                    if let Some(st) = strict {
                        s.insert("strict".into(), json!(st));
                    }
                    json!({"type": "json_schema", "json_schema": s})
                }
            },
        );
    }
    put(&mut o, "temperature", req.temperature);
    put(&mut o, "top_p", req.top_p);
    if req.top_k.is_some() {
        if same {
            put(&mut o, "top_k", req.top_k);
        } else {
            dropped.push("top_k".to_string());
        }
    }
    put(&mut o, "max_tokens", req.max_tokens);
    if !req.stop.is_empty() {
        o.insert("stop".into(), json!(req.stop));
    }
    put(&mut o, "n", req.n);
    put(&mut o, "seed", req.seed);
    put(&mut o, "presence_penalty", req.presence_penalty);
    put(&mut o, "frequency_penalty", req.frequency_penalty);
    if let Some(u) = &req.user {
        o.insert("user".into(), json!(u));
    }
    if let Some(m) = &req.metadata {
        o.insert("metadata".into(), Value::Object(m.clone()));
    }
    if req.stream {
        o.insert("stream".into(), json!(true));
        if opts.stream_usage || req.include_usage {
            o.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    for (k, v) in &req.extra {
        if same {
            o.insert(k.clone(), v.clone());
        } else {
            dropped.push(k.clone());
        }
    }
    Ok(Encoded {
        body: serde_json::to_vec(&Value::Object(o)).unwrap_or_default(),
        dropped,
    })
}

fn put<T: Into<Value>>(o: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        o.insert(key.into(), v.into());
    }
}

fn encode_message(m: &Message) -> Value {
    let role = match m.role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut o = Map::new();
    o.insert("role".into(), json!(role));
    let has_image = m.content.iter().any(|p| matches!(p, Part::Image(_)));
    let content = if has_image {
        Value::Array(
            m.content
                .iter()
                .map(|p| match p {
                    Part::Text(t) => json!({"type": "text", "text": t}),
                    Part::Image(img) => {
                        let mut iu = Map::new();
                        iu.insert("url".into(), json!(img.to_url()));
                        if let Image::Url {
                            detail: Some(d), ..
                        } = img
                        {
                            iu.insert("detail".into(), json!(d));
                        }
                        json!({"type": "image_url", "image_url": iu})
                    }
                })
                .collect(),
        )
    } else if m.content.is_empty() && !m.tool_calls.is_empty() {
        Value::Null
    } else {
        json!(m.joined_text())
    };
    o.insert("content".into(), content);
    if let Some(n) = &m.name {
        if m.role != Role::Tool {
            o.insert("name".into(), json!(n));
        }
    }
    if !m.tool_calls.is_empty() {
        let calls = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        o.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &m.tool_call_id {
        o.insert("tool_call_id".into(), json!(id));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSGS: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

    fn decoded(rest: &str) -> Result<ChatRequest, CodecError> {
        let body = format!(r#"{{"model":"m",{MSGS}{rest}}}"#);
        let fast = decode(body.as_bytes());
        // The reference decoder agrees, error for error.
        let reference = decode_fields(body.as_bytes());
        assert_eq!(format!("{fast:?}"), format!("{reference:?}"));
        fast
    }

    #[test]
    fn known_keys_are_read_and_checked_whichever_are_present() {
        let r = decoded("").unwrap();
        assert_eq!((r.temperature, r.max_tokens, r.stream), (None, None, false));
        assert!(r.extra.is_empty());
        let r = decoded(r#","temperature":0.5,"max_tokens":7,"stream":true,"x-y":1"#).unwrap();
        assert_eq!(r.temperature, Some(0.5));
        assert_eq!(r.max_tokens, Some(7));
        assert!(r.stream);
        assert_eq!(r.extra.get("x-y"), Some(&json!(1)));
        assert_eq!(r.extra.len(), 1);
        for (bad, field) in [
            (r#","temperature":"hot""#, "'temperature' must be a number"),
            (r#","seed":1.5"#, "'seed' must be an integer"),
            (r#","stream":1"#, "'stream' must be a boolean"),
            (r#","n":-1"#, "'n' must be a non-negative integer"),
        ] {
            let e = decoded(bad).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }
}
