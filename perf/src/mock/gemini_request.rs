//! Validation of Gemini `GenerateContentRequest` bodies. Google's JSON
//! mapping accepts both lowerCamelCase and snake_case field names and rejects
//! unknown top-level fields; the mock does the same, so a gateway that leaks
//! another format's fields (`messages`, `stream`, …) gets the real 400.

use serde_json::Value;

use crate::mock::text;
use crate::mock::tools::{self, Choice, Tool};

pub struct Request {
    pub prompt_tokens: u64,
    /// Text parts of the last user turn (the echo and tool-argument source).
    pub last_user: String,
    /// Set when the last turn carries `functionResponse` parts.
    pub tool_result: Option<String>,
    pub tools: Vec<Tool>,
    pub choice: Choice,
    pub max: Option<u64>,
    pub stops: Vec<String>,
    pub candidates: usize,
    /// `Some` when `responseMimeType` is JSON; holds the schema, if any.
    pub json: Option<Option<Value>>,
}

const TOP_LEVEL: &[&str] = &[
    "model",
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
    "labels",
];

/// Images and other inline media count as a fixed block of tokens.
const MEDIA_TOKENS: u64 = 258;

fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for ch in camel.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// A field by its lowerCamelCase name or its snake_case alias.
pub fn get<'a>(v: &'a Value, camel: &str) -> Option<&'a Value> {
    v.get(camel)
        .or_else(|| v.get(snake(camel)))
        .filter(|x| !x.is_null())
}

fn invalid(path: &str, what: &str) -> String {
    format!("* GenerateContentRequest.{path}: {what}")
}

pub fn parse(v: &Value) -> Result<Request, String> {
    let Some(obj) = v.as_object() else {
        return Err("Invalid JSON payload received. Expected an object.".into());
    };
    for k in obj.keys() {
        if !TOP_LEVEL.iter().any(|t| t == k || snake(t) == *k) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
            ));
        }
    }
    let Some(contents) = get(v, "contents").and_then(Value::as_array) else {
        return Err(invalid("contents", "contents is not specified"));
    };
    if contents.is_empty() {
        return Err(invalid("contents", "contents is not specified"));
    }
    let mut len = 0;
    let mut media = 0;
    if let Some(sys) = get(v, "systemInstruction") {
        let (l, m) = parts_len(sys, "system_instruction")?;
        len += l;
        media += m;
    }
    for (i, c) in contents.iter().enumerate() {
        match c.get("role").and_then(Value::as_str) {
            None | Some("user" | "model") => {}
            Some(_) => return Err("Please use a valid role: user, model.".into()),
        }
        let (l, m) = parts_len(c, &format!("contents[{i}]"))?;
        len += l;
        media += m;
    }
    let (tools, choice) = parse_tools(v)?;
    if let Some(t) = get(v, "tools") {
        len += t.to_string().len();
    }
    let last_user = contents
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(Value::as_str).unwrap_or("user") == "user")
        .map(texts)
        .unwrap_or_default();
    let tool_result = contents.last().and_then(function_responses);
    let cfg = get(v, "generationConfig");
    let cfg_field = |name: &str| cfg.and_then(|c| get(c, name));
    let max = match cfg_field("maxOutputTokens") {
        None => None,
        Some(m) => Some(m.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
            invalid(
                "generation_config.max_output_tokens",
                "must be a positive integer",
            )
        })?),
    };
    for (name, lo, hi) in [("temperature", 0.0, 2.0), ("topP", 0.0, 1.0)] {
        if let Some(x) = cfg_field(name) {
            if !x.as_f64().is_some_and(|x| (lo..=hi).contains(&x)) {
                let path = format!("generation_config.{}", snake(name));
                return Err(invalid(
                    &path,
                    &format!("must be in the range [{lo}, {hi}]"),
                ));
            }
        }
    }
    if cfg_field("topK").is_some_and(|k| k.as_u64().is_none()) {
        return Err(invalid(
            "generation_config.top_k",
            "must be a non-negative integer",
        ));
    }
    let stops: Vec<String> = cfg_field("stopSequences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if stops.len() > 5 {
        return Err(invalid(
            "generation_config.stop_sequences",
            "at most 5 stop sequences are allowed",
        ));
    }
    let candidates = match cfg_field("candidateCount") {
        None => 1,
        Some(n) => match n.as_u64() {
            Some(n @ 1..=8) => n as usize,
            _ => {
                return Err(invalid(
                    "generation_config.candidate_count",
                    "must be between 1 and 8",
                ))
            }
        },
    };
    let schema = cfg_field("responseSchema").or_else(|| cfg_field("responseJsonSchema"));
    let json = match cfg_field("responseMimeType").and_then(Value::as_str) {
        None | Some("text/plain") if schema.is_some() => {
            return Err(invalid(
                "generation_config.response_mime_type",
                "responseSchema requires responseMimeType \"application/json\"",
            ))
        }
        None | Some("text/plain") => None,
        Some("application/json") => Some(schema.cloned()),
        Some("text/x.enum") => None,
        Some(other) => {
            return Err(invalid(
                "generation_config.response_mime_type",
                &format!(
                    "allowed mimetypes are text/plain, application/json, text/x.enum; got {other}"
                ),
            ))
        }
    };
    Ok(Request {
        prompt_tokens: text::estimate_tokens(len) + MEDIA_TOKENS * media,
        last_user,
        tool_result,
        tools,
        choice,
        max,
        stops,
        candidates,
        json,
    })
}

/// Validates a `Content`; returns (text bytes, media parts).
fn parts_len(content: &Value, path: &str) -> Result<(usize, u64), String> {
    let parts = get(content, "parts").and_then(Value::as_array);
    let Some(parts) = parts.filter(|p| !p.is_empty()) else {
        return Err(invalid(
            &format!("{path}.parts"),
            "contents.parts must not be empty.",
        ));
    };
    let (mut len, mut media) = (0, 0);
    for (j, p) in parts.iter().enumerate() {
        if let Some(t) = get(p, "text") {
            len += t.as_str().map_or(0, str::len);
        } else if let Some(d) = get(p, "inlineData") {
            if get(d, "mimeType").is_none() || get(d, "data").is_none() {
                let at = format!("{path}.parts[{j}].inline_data");
                return Err(invalid(&at, "mime_type and data are required"));
            }
            media += 1;
        } else if let Some(f) = get(p, "functionCall").or_else(|| get(p, "functionResponse")) {
            if f.get("name").and_then(Value::as_str).is_none() {
                return Err(invalid(
                    &format!("{path}.parts[{j}].function_call.name"),
                    "name is required",
                ));
            }
            len += f.to_string().len();
        } else if get(p, "fileData").is_some()
            || get(p, "executableCode").is_some()
            || get(p, "codeExecutionResult").is_some()
        {
            media += 1;
        } else {
            return Err(invalid(
                &format!("{path}.parts[{j}].data"),
                "required oneof field 'data' must have one initialized field",
            ));
        }
    }
    Ok((len, media))
}

fn texts(content: &Value) -> String {
    get(content, "parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| get(p, "text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

/// The `response` object of each `functionResponse` part, as compact JSON.
fn function_responses(content: &Value) -> Option<String> {
    let parts = get(content, "parts")?.as_array()?;
    let out: Vec<String> = parts
        .iter()
        .filter_map(|p| get(p, "functionResponse"))
        .map(|f| f.get("response").map(Value::to_string).unwrap_or_default())
        .collect();
    (!out.is_empty()).then(|| out.join("\n"))
}

fn parse_tools(v: &Value) -> Result<(Vec<Tool>, Choice), String> {
    let mut out = Vec::new();
    for (i, t) in get(v, "tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let decls = get(t, "functionDeclarations").and_then(Value::as_array);
        for (j, d) in decls.into_iter().flatten().enumerate() {
            let Some(name) = d.get("name").and_then(Value::as_str) else {
                let at = format!("tools[{i}].function_declarations[{j}].name");
                return Err(invalid(&at, "name is required"));
            };
            let schema = get(d, "parameters")
                .or_else(|| get(d, "parametersJsonSchema"))
                .cloned()
                .unwrap_or(Value::Null);
            out.push(Tool {
                name: name.to_string(),
                schema,
            });
        }
    }
    let cfg = get(v, "toolConfig").and_then(|c| get(c, "functionCallingConfig"));
    let mode = cfg.and_then(|c| get(c, "mode")).and_then(Value::as_str);
    let allowed: Vec<&str> = cfg
        .and_then(|c| get(c, "allowedFunctionNames"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let choice = match mode {
        None | Some("MODE_UNSPECIFIED" | "AUTO" | "VALIDATED") => Choice::Auto,
        Some("NONE") => Choice::None,
        Some("ANY") => match allowed.first() {
            Some(n) => Choice::Named((*n).to_string()),
            None => Choice::Any,
        },
        Some(other) => {
            return Err(invalid(
                "tool_config.function_calling_config.mode",
                &format!("invalid value \"{other}\""),
            ))
        }
    };
    // Same decision as every other format; a forced unknown name is caught here.
    tools::plan(&out, &choice, None, "").map_err(|e| invalid("tool_config", &e))?;
    Ok((out, choice))
}
