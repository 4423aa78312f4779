//! Canonical → Gemini `generateContent` requests.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::canonical::*;
use crate::codec::{EncodeOptions, Encoded};
use crate::error::CodecError;
use crate::json::arguments_object;

/// Gemini's `parameters` take an OpenAPI subset; JSON Schema keywords
/// outside it make the request fail, so they are removed.
fn sanitize_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "additionalProperties" | "$schema" | "strict")
                })
                .map(|(k, v)| (k.clone(), sanitize_schema(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(sanitize_schema).collect()),
        other => other.clone(),
    }
}

fn image_part(img: &Image) -> Value {
    match img {
        Image::Base64 { media_type, data } => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        Image::Url { url, .. } => {
            json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}})
        }
    }
}

fn guess_mime(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if path.ends_with(".png") {
        "image/png"
    } else if path.ends_with(".gif") {
        "image/gif"
    } else if path.ends_with(".webp") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

fn parts(content: &[Part]) -> Vec<Value> {
    content
        .iter()
        .filter_map(|p| match p {
            Part::Text(t) if t.is_empty() => None,
            Part::Text(t) => Some(json!({"text": t})),
            Part::Image(img) => Some(image_part(img)),
        })
        .collect()
}

pub fn encode(req: &ChatRequest, opts: &EncodeOptions<'_>) -> Result<Encoded, CodecError> {
    let mut dropped = Vec::new();
    let mut system = Vec::new();
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, content) = match m.role {
            Role::System | Role::Developer => {
                system.push(json!({"text": m.joined_text()}));
                continue;
            }
            Role::User => ("user", parts(&m.content)),
            Role::Assistant => {
                let mut p = parts(&m.content);
                for (j, c) in m.tool_calls.iter().enumerate() {
                    names.insert(c.id.as_str(), c.name.as_str());
                    let args = arguments_object(
                        &c.arguments,
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    )?;
                    p.push(json!({"functionCall": {"name": c.name, "args": args}}));
                }
                ("model", p)
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                let name = names.get(id).copied().unwrap_or(id);
                let text = m.joined_text();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ if m.is_error => json!({"error": text}),
                    _ => json!({"result": text}),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
        };
        if content.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, p)) if *r == role => p.extend(content),
            _ => turns.push((role, content)),
        }
    }
    let mut o = Map::new();
    o.insert(
        "contents".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    if !system.is_empty() {
        o.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), json!(t.name));
                if let Some(desc) = &t.description {
                    d.insert("description".into(), json!(desc));
                }
                d.insert("parameters".into(), sanitize_schema(&t.parameters));
                Value::Object(d)
            })
            .collect();
        o.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    if let Some(tc) = &req.tool_choice {
        let cfg = match tc {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Named(n) => json!({"mode": "ANY", "allowedFunctionNames": [n]}),
        };
        o.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
    }
    let mut g = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            g.insert(k.into(), v);
        }
    };
    put("maxOutputTokens", req.max_tokens.map(Value::from));
    put("temperature", req.temperature.map(Value::from));
    put("topP", req.top_p.map(Value::from));
    put("topK", req.top_k.map(Value::from));
    put("candidateCount", req.n.map(Value::from));
    put("seed", req.seed.map(Value::from));
    put("presencePenalty", req.presence_penalty.map(Value::from));
    put("frequencyPenalty", req.frequency_penalty.map(Value::from));
    if !req.stop.is_empty() {
        put("stopSequences", Some(json!(req.stop)));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            put("responseMimeType", Some(json!("application/json")))
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            put("responseMimeType", Some(json!("application/json")));
            put("responseJsonSchema", Some(schema.clone()));
        }
        _ => {}
    }
    if !g.is_empty() {
        o.insert("generationConfig".into(), Value::Object(g));
    }
    for (name, present) in [
        ("parallel_tool_calls", req.parallel_tool_calls.is_some()),
        ("user", req.user.is_some()),
        ("metadata", req.metadata.is_some()),
    ] {
        if present {
            dropped.push(name.to_string());
        }
    }
    dropped.extend(req.extra.keys().cloned());
    let _ = opts;
    Ok(Encoded {
        body: serde_json::to_vec(&Value::Object(o)).unwrap_or_default(),
        dropped,
    })
}
