//! Validation of Anthropic Messages requests. Messages name the offending
//! field the way the API does (`messages.1.role: …`), so a gateway's
//! translation bugs show up as a precise 400 instead of a vague failure.

use serde_json::{Map, Value};

use crate::mock::common::text_of;
use crate::mock::text;
use crate::mock::tools::{Choice, Tool};

pub struct Request {
    pub model: String,
    pub max_tokens: u64,
    pub stream: bool,
    pub input_tokens: u64,
    /// Text blocks of the last user message (the echo and tool-argument source).
    pub last_user: String,
    /// Set when the last message carries `tool_result` blocks.
    pub tool_result: Option<String>,
    pub tools: Vec<Tool>,
    pub choice: Choice,
    pub stop_sequences: Vec<String>,
}

fn required<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, String> {
    obj.get(field)
        .ok_or_else(|| format!("{field}: Field required"))
}

/// `with_max` is false for `count_tokens`, which takes no `max_tokens`.
pub fn parse(body: &[u8], with_max: bool) -> Result<Request, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("There was an error parsing the body of your request: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("Input should be a valid dictionary".into());
    };
    let model = required(obj, "model")?
        .as_str()
        .ok_or("model: Input should be a valid string")?
        .to_string();
    let max_tokens = if with_max {
        let m = required(obj, "max_tokens")?;
        match (m.as_u64(), m.as_i64()) {
            (Some(n), _) if n >= 1 => n,
            (Some(_), _) | (None, Some(_)) => {
                return Err("max_tokens: Input should be greater than or equal to 1".into())
            }
            (None, None) => return Err("max_tokens: Input should be a valid integer".into()),
        }
    } else {
        0
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream: Input should be a valid boolean".into()),
    };
    if let Some(t) = obj.get("temperature").filter(|t| !t.is_null()) {
        match t.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => {}
            Some(_) => return Err("temperature: Input should be between 0 and 1".into()),
            None => return Err("temperature: Input should be a valid number".into()),
        }
    }
    let mut prompt_len = system_len(obj.get("system"))?;
    let messages = required(obj, "messages")?
        .as_array()
        .ok_or("messages: Input should be a valid list")?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (i, m) in messages.iter().enumerate() {
        prompt_len += message_len(i, m)?;
    }
    let (tools, choice) = parse_tools(obj)?;
    if let Some(t) = obj.get("tools") {
        prompt_len += t.to_string().len();
    }
    let last = messages.last();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| user_text(m.get("content")))
        .unwrap_or_default();
    let tool_result = last
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| tool_results(m.get("content")));
    let stop_sequences = match obj.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(String::from))
            .collect::<Option<Vec<_>>>()
            .ok_or("stop_sequences: Input should be a list of strings")?,
        Some(_) => return Err("stop_sequences: Input should be a valid list".into()),
    };
    Ok(Request {
        model,
        max_tokens,
        stream,
        input_tokens: text::estimate_tokens(prompt_len),
        last_user,
        tool_result,
        tools,
        choice,
        stop_sequences,
    })
}

/// `system` is a string or a list of text blocks.
fn system_len(system: Option<&Value>) -> Result<usize, String> {
    match system {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => Ok(s.len()),
        Some(Value::Array(blocks)) => {
            let mut n = 0;
            for (j, b) in blocks.iter().enumerate() {
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(format!("system.{j}.type: Input should be 'text'"));
                }
                let Some(t) = b.get("text").and_then(Value::as_str) else {
                    return Err(format!("system.{j}.text: Field required"));
                };
                n += t.len();
            }
            Ok(n)
        }
        Some(_) => Err("system: Input should be a valid string or a list of text blocks".into()),
    }
}

/// Validates one message; returns the length of the text it contributes.
fn message_len(i: usize, m: &Value) -> Result<usize, String> {
    let Some(obj) = m.as_object() else {
        return Err(format!("messages.{i}: Input should be a valid dictionary"));
    };
    match obj.get("role").and_then(Value::as_str) {
        Some("user" | "assistant") => {}
        None if !obj.contains_key("role") => {
            return Err(format!("messages.{i}.role: Field required"))
        }
        _ => {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ))
        }
    }
    match obj.get("content") {
        None => Err(format!("messages.{i}.content: Field required")),
        Some(Value::String(s)) => Ok(s.len()),
        Some(Value::Array(blocks)) => {
            let mut n = 0;
            for (j, b) in blocks.iter().enumerate() {
                let kind = b.get("type").and_then(Value::as_str);
                n += match kind {
                    None => return Err(format!("messages.{i}.content.{j}.type: Field required")),
                    Some("text") => b.get("text").and_then(Value::as_str).map_or(0, str::len),
                    Some("tool_use") => b.get("input").map_or(0, |v| v.to_string().len()),
                    Some("tool_result") => {
                        if b.get("tool_use_id").and_then(Value::as_str).is_none() {
                            return Err(format!(
                                "messages.{i}.content.{j}.tool_use_id: Field required"
                            ));
                        }
                        b.get("content").map_or(0, |c| text_of(c).len())
                    }
                    Some(_) => 0,
                };
            }
            Ok(n)
        }
        Some(_) => Err(format!(
            "messages.{i}.content: Input should be a valid list"
        )),
    }
}

fn user_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The text of every `tool_result` block, or `None` when there is none.
fn tool_results(content: Option<&Value>) -> Option<String> {
    let blocks = content?.as_array()?;
    let results: Vec<String> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| b.get("content").map(text_of).unwrap_or_default())
        .collect();
    (!results.is_empty()).then(|| results.join("\n"))
}

fn parse_tools(obj: &Map<String, Value>) -> Result<(Vec<Tool>, Choice), String> {
    let mut tools = Vec::new();
    match obj.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, t) in list.iter().enumerate() {
                // Server tools (web search, …) carry a versioned `type` and no schema.
                if t.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k != "custom")
                {
                    continue;
                }
                let Some(name) = t.get("name").and_then(Value::as_str) else {
                    return Err(format!("tools.{i}.name: Field required"));
                };
                let Some(schema) = t.get("input_schema").filter(|s| s.is_object()) else {
                    return Err(format!("tools.{i}.input_schema: Field required"));
                };
                tools.push(Tool {
                    name: name.to_string(),
                    schema: schema.clone(),
                });
            }
        }
        Some(_) => return Err("tools: Input should be a valid list".into()),
    }
    let choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => Choice::Auto,
        Some(c) => match c.get("type").and_then(Value::as_str) {
            Some("auto") => Choice::Auto,
            Some("any") => Choice::Any,
            Some("none") => Choice::None,
            Some("tool") => match c.get("name").and_then(Value::as_str) {
                Some(n) => Choice::Named(n.to_string()),
                None => return Err("tool_choice.tool.name: Field required".into()),
            },
            _ => {
                return Err(
                    "tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
                        .into(),
                )
            }
        },
    };
    Ok((tools, choice))
}
