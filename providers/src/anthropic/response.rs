//! Anthropic Messages responses ⇄ canonical.

use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::canonical::*;
use crate::codec::ResponseMeta;
use crate::error::CodecError;
use crate::json::*;

const NAME: &str = "anthropic";

pub fn finish_from(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

pub fn stop_reason(f: Option<&FinishReason>, stop_sequence: Option<&str>) -> &'static str {
    match f {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        _ if stop_sequence.is_some() => "stop_sequence",
        _ => "end_turn",
    }
}

/// Anthropic's `input_tokens` leaves out cached tokens; canonical counts all.
pub fn usage_from(u: &Obj, input: Option<u64>) -> Usage {
    usage_of(
        input.unwrap_or_else(|| u64_at(u, "input_tokens")),
        u64_at(u, "output_tokens"),
        u64_at(u, "cache_read_input_tokens"),
        u64_at(u, "cache_creation_input_tokens"),
    )
}

fn usage_of(input: u64, output: u64, read: u64, created: u64) -> Usage {
    Usage {
        prompt_tokens: input + read + created,
        completion_tokens: output,
        cache_read_tokens: read,
        cache_creation_tokens: created,
    }
}

pub fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cache_read_tokens + u.cache_creation_tokens),
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    })
}

/// A message in the shape Anthropic sends, read in one typed pass that
/// borrows its strings; anything unusual goes to [`decode_loose`].
#[derive(serde::Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    model: Option<Text<'a>>,
    #[serde(borrow)]
    content: Vec<Block<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Text<'a>>,
    #[serde(borrow)]
    stop_sequence: Option<Text<'a>>,
    usage: Option<MessageUsage>,
}

/// A string borrowed from the body unless it has escapes (serde borrows a
/// bare `Cow` only, not one inside an `Option`).
#[derive(serde::Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl Text<'_> {
    fn owned(self) -> String {
        self.0.into_owned()
    }
}

fn text<'t>(t: &'t Option<Text<'_>>) -> &'t str {
    t.as_ref().map_or("", |t| &t.0)
}

#[derive(serde::Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    text: Option<Text<'a>>,
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    /// Raw, `null` included (the loose pass writes that as "null").
    #[serde(default, borrow, deserialize_with = "raw")]
    input: Option<&'a RawValue>,
}

fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as serde::Deserialize>::deserialize(d).map(Some)
}

#[derive(serde::Deserialize)]
struct MessageUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

pub fn decode(body: &[u8], meta: &ResponseMeta) -> Result<ChatResponse, CodecError> {
    let Ok(m) = serde_json::from_slice::<Message<'_>>(body) else {
        return decode_loose(body, meta);
    };
    let mut out: Option<String> = None;
    let mut tool_calls = Vec::new();
    for b in &m.content {
        match text(&b.kind) {
            "text" => out.get_or_insert_with(String::new).push_str(text(&b.text)),
            "tool_use" => tool_calls.push(ToolCall {
                id: text(&b.id).to_string(),
                name: text(&b.name).to_string(),
                // Compact, as the loose pass writes it.
                arguments: b.input.map_or_else(
                    || "{}".into(),
                    |raw| {
                        serde_json::from_str::<Value>(raw.get())
                            .map_or_else(|_| raw.get().to_string(), |v| v.to_string())
                    },
                ),
            }),
            _ => {}
        }
    }
    let usage = m.usage.map(|u| {
        usage_of(
            u.input_tokens.unwrap_or(0),
            u.output_tokens.unwrap_or(0),
            u.cache_read_input_tokens.unwrap_or(0),
            u.cache_creation_input_tokens.unwrap_or(0),
        )
    });
    Ok(ChatResponse {
        id: m.id.map_or_else(|| meta.id.clone(), Text::owned),
        model: m.model.map(Text::owned).unwrap_or_default(),
        created: meta.created,
        choices: vec![Choice {
            index: 0,
            text: out,
            tool_calls,
            finish: m.stop_reason.as_ref().map(|r| finish_from(&r.0)),
            stop_sequence: m.stop_sequence.map(Text::owned),
        }],
        usage,
    })
}

/// Field by field over a parsed value: tolerates any shape the typed pass
/// refuses (a block that is not an object, a field of another type).
fn decode_loose(body: &[u8], meta: &ResponseMeta) -> Result<ChatResponse, CodecError> {
    let o = upstream_object(body, NAME, "response")?;
    let content = o
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| upstream(NAME, "response", "no 'content' array"))?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for b in content.iter().filter_map(Value::as_object) {
        match str_at(b, "type") {
            Some("text") => text
                .get_or_insert_with(String::new)
                .push_str(str_at(b, "text").unwrap_or("")),
            Some("tool_use") => tool_calls.push(ToolCall {
                id: str_at(b, "id").unwrap_or("").to_string(),
                name: str_at(b, "name").unwrap_or("").to_string(),
                arguments: b.get("input").map_or_else(|| "{}".into(), Value::to_string),
            }),
            _ => {}
        }
    }
    let stop_sequence = str_at(&o, "stop_sequence").map(str::to_string);
    Ok(ChatResponse {
        id: str_at(&o, "id").map_or_else(|| meta.id.clone(), str::to_string),
        model: str_at(&o, "model").unwrap_or("").to_string(),
        created: meta.created,
        choices: vec![Choice {
            index: 0,
            text,
            tool_calls,
            finish: str_at(&o, "stop_reason").map(finish_from),
            stop_sequence,
        }],
        usage: o
            .get("usage")
            .and_then(Value::as_object)
            .map(|u| usage_from(u, None)),
    })
}

pub fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({}),
    }
}

pub fn encode(r: &ChatResponse) -> Vec<u8> {
    let choice = r.choices.first();
    let mut content = Vec::new();
    if let Some(c) = choice {
        if let Some(t) = c.text.as_deref().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": t}));
        }
        for t in &c.tool_calls {
            content.push(
                json!({"type": "tool_use", "id": t.id, "name": t.name, "input": tool_input(&t.arguments)}),
            );
        }
    }
    let stop_sequence = choice.and_then(|c| c.stop_sequence.as_deref());
    json!({
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": content,
        "stop_reason": stop_reason(choice.and_then(|c| c.finish.as_ref()), stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": usage_json(&r.usage.unwrap_or_default()),
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "fallback-id".into(),
            created: 7,
        }
    }

    #[test]
    fn typed_and_loose_passes_agree() {
        let bodies: [&[u8]; 5] = [
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Hi \"there\""},{"type":"thinking","thinking":"x","signature":"s"},{"type":"tool_use","id":"t1","name":"f","input":{ "a" : [1, 2] }}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":4,"cache_read_input_tokens":5,"cache_creation_input_tokens":null}}"#,
            br#"{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"stop_reason":"stop_sequence","stop_sequence":"END"}"#,
            br#"{"id":"m","model":null,"content":[],"usage":{}}"#,
            br#"{"id":"m","content":[{"type":"tool_use","id":"t","name":"n"}],"stop_reason":"weird"}"#,
            br#"{"id":"m\u00e9","content":[{"type":"tool_use","id":"t","name":"n","input":null},{"type":"te\u0078t","text":"caf\u00e9"}]}"#,
        ];
        for body in bodies {
            let typed = decode(body, &meta()).unwrap();
            let loose = decode_loose(body, &meta()).unwrap();
            assert_eq!(typed, loose, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn shapes_the_typed_pass_refuses_still_decode() {
        // A block that is not an object, a usage count that is not a number.
        let body = br#"{"id":"m","content":["stray",{"type":"text","text":"ok"}],"usage":{"input_tokens":"many","output_tokens":2}}"#;
        let r = decode(body, &meta()).unwrap();
        assert_eq!(r.choices[0].text.as_deref(), Some("ok"));
        assert_eq!(r.usage.unwrap().completion_tokens, 2);
        assert!(decode(br#"{"id":"m"}"#, &meta()).is_err());
        assert!(decode(b"[1]", &meta()).is_err());
    }
}
