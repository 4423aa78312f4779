//! OpenAI chat completion responses ⇄ canonical.

use serde_json::Value;

use crate::canonical::*;
use crate::codec::ResponseMeta;
use crate::error::CodecError;
use crate::json::*;
use crate::json_write::{write_array, write_str};

const NAME: &str = "openai";

pub fn finish_from(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

pub fn finish_str(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Stop | FinishReason::Other(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

pub fn usage_from(u: &Obj) -> Usage {
    let cached = u
        .get("prompt_tokens_details")
        .and_then(Value::as_object)
        .map_or(0, |d| u64_at(d, "cached_tokens"));
    Usage {
        prompt_tokens: u64_at(u, "prompt_tokens"),
        completion_tokens: u64_at(u, "completion_tokens"),
        cache_read_tokens: cached,
        cache_creation_tokens: 0,
    }
}

#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: Option<RawUsage>,
}

#[derive(serde::Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<RawDetails>,
}

#[derive(serde::Deserialize)]
struct RawDetails {
    #[serde(default)]
    cached_tokens: u64,
}

/// The usage of a response without building the rest: other fields are
/// skipped, not allocated.
pub fn usage_only(body: &[u8]) -> Option<Usage> {
    use crate::json_scan::{last_member, top_level_value};
    // Fastest: `usage` is the last member (OpenAI and most servers put it
    // there). Fast: find the top-level `usage` by a byte scan. Either way
    // only the usage object is parsed.
    let scanned = last_member(body, "usage")
        .and_then(|at| usage_at(&body[at..], true))
        .or_else(|| top_level_value(body, "usage").and_then(|at| usage_at(&body[at..], false)));
    let u = match scanned {
        Some(u) => u?,
        None => serde_json::from_slice::<UsageOnly>(body).ok()?.usage?,
    };
    Some(Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cache_read_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
        cache_creation_tokens: 0,
    })
}

/// The usage value at the start of `rest`; `last`: only if the object
/// closes right after it. A dozen keys are read as `str`s: checking `rest`
/// is UTF-8 once costs less than checking each of them.
fn usage_at(rest: &[u8], last: bool) -> Option<Option<RawUsage>> {
    fn parse<'de, R: serde_json::de::Read<'de>>(
        de: serde_json::Deserializer<R>,
        rest: &[u8],
        last: bool,
    ) -> Option<Option<RawUsage>> {
        let mut values = de.into_iter::<Option<RawUsage>>();
        let u = values.next()?.ok()?;
        (!last || crate::json_scan::closes_object(&rest[values.byte_offset()..])).then_some(u)
    }
    match std::str::from_utf8(rest) {
        Ok(text) => parse(serde_json::Deserializer::from_str(text), rest, last),
        Err(_) => parse(serde_json::Deserializer::from_slice(rest), rest, last),
    }
}

pub fn usage_json(u: &Usage) -> Value {
    serde_json::to_value(UsageOut::from(u)).unwrap_or_default()
}

pub fn decode(body: &[u8], meta: &ResponseMeta) -> Result<ChatResponse, CodecError> {
    let o = upstream_object(body, NAME, "response")?;
    let choices = o
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| upstream(NAME, "response", "no 'choices' array"))?;
    let mut out = Vec::with_capacity(choices.len());
    for (i, c) in choices.iter().enumerate() {
        let c = c
            .as_object()
            .ok_or_else(|| upstream(NAME, "response", "a choice is not an object"))?;
        let msg = c.get("message").and_then(Value::as_object);
        let text = msg.and_then(|m| str_at(m, "content").or(str_at(m, "refusal")));
        let tool_calls = msg
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|call| {
                        let f = call.get("function").and_then(Value::as_object);
                        ToolCall {
                            id: str_at(call, "id").unwrap_or("").to_string(),
                            name: f.and_then(|f| str_at(f, "name")).unwrap_or("").to_string(),
                            arguments: f
                                .and_then(|f| str_at(f, "arguments"))
                                .unwrap_or("")
                                .to_string(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Choice {
            index: c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(i as u32, |v| v as u32),
            text: text.map(str::to_string),
            tool_calls,
            finish: str_at(c, "finish_reason").map(finish_from),
            stop_sequence: None,
        });
    }
    Ok(ChatResponse {
        id: str_at(&o, "id").map_or_else(|| meta.id.clone(), str::to_string),
        model: str_at(&o, "model").unwrap_or("").to_string(),
        created: o
            .get("created")
            .and_then(Value::as_u64)
            .unwrap_or(meta.created),
        choices: out,
        usage: o.get("usage").and_then(Value::as_object).map(usage_from),
    })
}

#[derive(serde::Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedOut,
}

#[derive(serde::Serialize)]
struct CachedOut {
    cached_tokens: u64,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> UsageOut {
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
            prompt_tokens_details: CachedOut {
                cached_tokens: u.cache_read_tokens,
            },
        }
    }
}

/// The answer in OpenAI's field order, written by hand: the serializer
/// serde derives cost three times as much (a call per token, every key
/// escaped again). `tests::serde_reference` is the layout it must match.
pub fn encode(r: &ChatResponse) -> Vec<u8> {
    let texts: usize = r
        .choices
        .iter()
        .map(|c| c.text.as_ref().map_or(0, String::len) + 160)
        .sum();
    let mut out = Vec::with_capacity(r.id.len() + r.model.len() + texts + 256);
    out.extend_from_slice(b"{\"id\":");
    write_str(&mut out, &r.id);
    out.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
    int(&mut out, r.created);
    out.extend_from_slice(b",\"model\":");
    write_str(&mut out, &r.model);
    out.extend_from_slice(b",\"choices\":");
    write_array(&mut out, &r.choices, choice);
    if let Some(u) = &r.usage {
        out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
        int(&mut out, u.prompt_tokens);
        out.extend_from_slice(b",\"completion_tokens\":");
        int(&mut out, u.completion_tokens);
        out.extend_from_slice(b",\"total_tokens\":");
        int(
            &mut out,
            u.prompt_tokens.saturating_add(u.completion_tokens),
        );
        out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        int(&mut out, u.cache_read_tokens);
        out.extend_from_slice(b"}}");
    }
    out.push(b'}');
    out
}

fn int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn choice(out: &mut Vec<u8>, c: &Choice) {
    out.extend_from_slice(b"{\"index\":");
    int(out, c.index);
    out.extend_from_slice(b",\"message\":{\"role\":\"assistant\",\"content\":");
    match &c.text {
        Some(t) => write_str(out, t),
        None if c.tool_calls.is_empty() => out.extend_from_slice(b"\"\""),
        None => out.extend_from_slice(b"null"),
    }
    if !c.tool_calls.is_empty() {
        out.extend_from_slice(b",\"tool_calls\":");
        write_array(out, &c.tool_calls, |out, t| {
            out.extend_from_slice(b"{\"id\":");
            write_str(out, &t.id);
            out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            write_str(out, &t.name);
            out.extend_from_slice(b",\"arguments\":");
            write_str(out, &t.arguments);
            out.extend_from_slice(b"}}");
        });
    }
    out.extend_from_slice(b",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
    match &c.finish {
        Some(f) => {
            out.push(b'"');
            out.extend_from_slice(finish_str(f).as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // What `encode` wrote before it was written by hand, through serde.
    #[derive(serde::Serialize)]
    struct Completion<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
        choices: Vec<CompletionChoice<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<UsageOut>,
    }

    #[derive(serde::Serialize)]
    struct CompletionChoice<'a> {
        index: u32,
        message: Message<'a>,
        logprobs: (),
        finish_reason: Option<&'static str>,
    }

    #[derive(serde::Serialize)]
    struct Message<'a> {
        role: &'static str,
        content: Option<&'a str>,
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        tool_calls: Vec<ToolCallOut<'a>>,
        refusal: (),
    }

    #[derive(serde::Serialize)]
    struct ToolCallOut<'a> {
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
        function: FunctionOut<'a>,
    }

    #[derive(serde::Serialize)]
    struct FunctionOut<'a> {
        name: &'a str,
        arguments: &'a str,
    }

    fn serde_reference(r: &ChatResponse) -> Vec<u8> {
        let choices = r
            .choices
            .iter()
            .map(|c| CompletionChoice {
                index: c.index,
                message: Message {
                    role: "assistant",
                    content: match &c.text {
                        Some(t) => Some(t),
                        None if c.tool_calls.is_empty() => Some(""),
                        None => None,
                    },
                    tool_calls: c
                        .tool_calls
                        .iter()
                        .map(|t| ToolCallOut {
                            id: &t.id,
                            kind: "function",
                            function: FunctionOut {
                                name: &t.name,
                                arguments: &t.arguments,
                            },
                        })
                        .collect(),
                    refusal: (),
                },
                logprobs: (),
                finish_reason: c.finish.as_ref().map(finish_str),
            })
            .collect();
        let out = Completion {
            id: &r.id,
            object: "chat.completion",
            created: r.created,
            model: &r.model,
            choices,
            usage: r.usage.as_ref().map(UsageOut::from),
        };
        serde_json::to_vec(&out).unwrap_or_default()
    }

    fn finish() -> impl Strategy<Value = Option<FinishReason>> {
        prop_oneof![
            Just(None),
            Just(Some(FinishReason::Stop)),
            Just(Some(FinishReason::Length)),
            Just(Some(FinishReason::ToolCalls)),
            Just(Some(FinishReason::ContentFilter)),
            any::<String>().prop_map(|s| Some(FinishReason::Other(s))),
        ]
    }

    fn choice() -> impl Strategy<Value = Choice> {
        let call = (any::<String>(), any::<String>(), any::<String>()).prop_map(
            |(id, name, arguments)| ToolCall {
                id,
                name,
                arguments,
            },
        );
        (
            any::<u32>(),
            proptest::option::of(any::<String>()),
            proptest::collection::vec(call, 0..3),
            finish(),
        )
            .prop_map(|(index, text, tool_calls, finish)| Choice {
                index,
                text,
                tool_calls,
                finish,
                stop_sequence: None,
            })
    }

    fn response() -> impl Strategy<Value = ChatResponse> {
        let usage = (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(prompt_tokens, completion_tokens, cache_read_tokens, cache_creation_tokens)| Usage {
                prompt_tokens,
                completion_tokens,
                cache_read_tokens,
                cache_creation_tokens,
            },
        );
        (
            any::<String>(),
            any::<String>(),
            any::<u64>(),
            proptest::collection::vec(choice(), 0..3),
            proptest::option::of(usage),
        )
            .prop_map(|(id, model, created, choices, usage)| ChatResponse {
                id,
                model,
                created,
                choices,
                usage,
            })
    }

    proptest! {
        #[test]
        fn written_by_hand_as_serde_writes_it(r in response()) {
            prop_assert_eq!(
                String::from_utf8(encode(&r)).unwrap(),
                String::from_utf8(serde_reference(&r)).unwrap()
            );
        }
    }
}
