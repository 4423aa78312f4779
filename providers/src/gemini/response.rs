//! Gemini `GenerateContentResponse` ⇄ canonical.

use serde_json::{json, Value};

use crate::canonical::*;
use crate::codec::ResponseMeta;
use crate::error::CodecError;
use crate::json::*;

const NAME: &str = "gemini";

pub fn finish_from(reason: &str, called_tools: bool) -> FinishReason {
    match reason {
        "STOP" if called_tools => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_ascii_lowercase()),
    }
}

pub fn finish_str(f: &FinishReason) -> String {
    match f {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP".into(),
        FinishReason::Length => "MAX_TOKENS".into(),
        FinishReason::ContentFilter => "SAFETY".into(),
        FinishReason::Other(o) => o.to_ascii_uppercase(),
    }
}

pub fn usage_from(u: &Obj) -> Usage {
    Usage {
        prompt_tokens: u64_at(u, "promptTokenCount"),
        completion_tokens: u64_at(u, "candidatesTokenCount") + u64_at(u, "thoughtsTokenCount"),
        cache_read_tokens: u64_at(u, "cachedContentTokenCount"),
        cache_creation_tokens: 0,
    }
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.completion_tokens,
        "totalTokenCount": u.prompt_tokens + u.completion_tokens,
        "cachedContentTokenCount": u.cache_read_tokens,
    })
}

/// One candidate's parts: text (thoughts left out) and function calls.
pub fn read_parts(c: &Obj) -> (Option<String>, Vec<(String, String)>) {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    let parts = c
        .get("content")
        .and_then(Value::as_object)
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten().filter_map(Value::as_object) {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = str_at(p, "text") {
            text.get_or_insert_with(String::new).push_str(t);
        }
        if let Some(f) = p.get("functionCall").and_then(Value::as_object) {
            calls.push((
                str_at(f, "name").unwrap_or("").to_string(),
                f.get("args").map_or_else(|| "{}".into(), Value::to_string),
            ));
        }
    }
    (text, calls)
}

pub fn decode(body: &[u8], meta: &ResponseMeta) -> Result<ChatResponse, CodecError> {
    let o = upstream_object(body, NAME, "response")?;
    let mut choices = Vec::new();
    for (i, c) in o
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .enumerate()
    {
        let index = c
            .get("index")
            .and_then(Value::as_u64)
            .map_or(i as u32, |v| v as u32);
        let (text, calls) = read_parts(c);
        let tool_calls: Vec<ToolCall> = calls
            .into_iter()
            .enumerate()
            .map(|(j, (name, arguments))| ToolCall {
                id: format!("call_{index}_{j}"),
                name,
                arguments,
            })
            .collect();
        choices.push(Choice {
            index,
            text,
            finish: str_at(c, "finishReason").map(|r| finish_from(r, !tool_calls.is_empty())),
            tool_calls,
            stop_sequence: None,
        });
    }
    if choices.is_empty() {
        // The prompt itself was blocked.
        let blocked = o
            .get("promptFeedback")
            .and_then(Value::as_object)
            .and_then(|f| str_at(f, "blockReason"));
        match blocked {
            Some(_) => choices.push(Choice {
                index: 0,
                text: None,
                tool_calls: Vec::new(),
                finish: Some(FinishReason::ContentFilter),
                stop_sequence: None,
            }),
            None => return Err(upstream(NAME, "response", "no candidates")),
        }
    }
    Ok(ChatResponse {
        id: str_at(&o, "responseId").map_or_else(|| meta.id.clone(), str::to_string),
        model: str_at(&o, "modelVersion").unwrap_or("").to_string(),
        created: meta.created,
        choices,
        usage: o
            .get("usageMetadata")
            .and_then(Value::as_object)
            .map(usage_from),
    })
}

pub fn encode(r: &ChatResponse) -> Vec<u8> {
    let candidates: Vec<Value> = r
        .choices
        .iter()
        .map(|c| {
            let mut parts = Vec::new();
            if let Some(t) = &c.text {
                parts.push(json!({"text": t}));
            }
            for t in &c.tool_calls {
                let args: Value = serde_json::from_str(&t.arguments).unwrap_or(json!({}));
                parts.push(json!({"functionCall": {"name": t.name, "args": args}}));
            }
            let mut cand = json!({"content": {"role": "model", "parts": parts}, "index": c.index});
            if let (Some(f), Some(m)) = (&c.finish, cand.as_object_mut()) {
                m.insert("finishReason".into(), json!(finish_str(f)));
            }
            cand
        })
        .collect();
    let mut o = json!({"candidates": candidates, "modelVersion": r.model, "responseId": r.id});
    if let (Some(u), Some(m)) = (&r.usage, o.as_object_mut()) {
        m.insert("usageMetadata".into(), usage_json(u));
    }
    o.to_string().into_bytes()
}
