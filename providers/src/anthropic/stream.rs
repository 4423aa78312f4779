//! Anthropic Messages streams ⇄ canonical events.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::response::{finish_from, stop_reason, usage_from, usage_json};
use crate::canonical::*;
use crate::codec::{ResponseMeta, StreamDecoder, StreamEncoder};
use crate::error::{CodecError, ProviderError};
use crate::json::*;
use crate::sse::{write_event, SseEvent};

const NAME: &str = "anthropic";

pub struct Decoder {
    meta: ResponseMeta,
    /// Content block index → tool call position.
    tool_blocks: HashMap<u64, u32>,
    calls: u32,
    input_tokens: Option<u64>,
    start_usage: Option<Obj>,
    done: bool,
}

impl Decoder {
    pub fn new(meta: &ResponseMeta) -> Decoder {
        Decoder {
            meta: meta.clone(),
            tool_blocks: HashMap::new(),
            calls: 0,
            input_tokens: None,
            start_usage: None,
            done: false,
        }
    }
}

impl StreamDecoder for Decoder {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), CodecError> {
        let o = upstream_object(ev.data.as_bytes(), NAME, "stream event")?;
        let kind = str_at(&o, "type").unwrap_or(ev.kind());
        match kind {
            "message_start" => {
                let m = o.get("message").and_then(Value::as_object);
                let usage = m.and_then(|m| m.get("usage")).and_then(Value::as_object);
                self.input_tokens = usage.map(|u| usage_from(u, None).prompt_tokens);
                self.start_usage = usage.cloned();
                out.push(StreamEvent::Start {
                    id: m
                        .and_then(|m| str_at(m, "id"))
                        .map_or_else(|| self.meta.id.clone(), str::to_string),
                    model: m.and_then(|m| str_at(m, "model")).unwrap_or("").to_string(),
                    created: self.meta.created,
                    prompt_tokens: self.input_tokens,
                });
            }
            "content_block_start" => {
                let index = o.get("index").and_then(Value::as_u64).unwrap_or(0);
                let b = o.get("content_block").and_then(Value::as_object);
                match b.and_then(|b| str_at(b, "type")) {
                    Some("tool_use") => {
                        let call = self.calls;
                        self.calls += 1;
                        self.tool_blocks.insert(index, call);
                        out.push(StreamEvent::ToolCallStart {
                            index: 0,
                            call,
                            id: b.and_then(|b| str_at(b, "id")).unwrap_or("").to_string(),
                            name: b.and_then(|b| str_at(b, "name")).unwrap_or("").to_string(),
                        });
                    }
                    Some("text") => {
                        if let Some(t) = b.and_then(|b| str_at(b, "text")).filter(|t| !t.is_empty())
                        {
                            out.push(StreamEvent::Text {
                                index: 0,
                                text: t.to_string(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = o.get("index").and_then(Value::as_u64).unwrap_or(0);
                let d = o
                    .get("delta")
                    .and_then(Value::as_object)
                    .ok_or_else(|| upstream(NAME, "stream event", "delta without 'delta'"))?;
                match str_at(d, "type") {
                    Some("text_delta") => out.push(StreamEvent::Text {
                        index: 0,
                        text: str_at(d, "text").unwrap_or("").to_string(),
                    }),
                    Some("input_json_delta") => {
                        let call = self.tool_blocks.get(&index).copied().ok_or_else(|| {
                            upstream(
                                NAME,
                                "stream event",
                                "input_json_delta outside a tool_use block",
                            )
                        })?;
                        let fragment = str_at(d, "partial_json").unwrap_or("");
                        if !fragment.is_empty() {
                            out.push(StreamEvent::ToolCallArgs {
                                index: 0,
                                call,
                                fragment: fragment.to_string(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(d) = o.get("delta").and_then(Value::as_object) {
                    if let Some(r) = str_at(d, "stop_reason") {
                        out.push(StreamEvent::Finish {
                            index: 0,
                            reason: finish_from(r),
                            stop_sequence: str_at(d, "stop_sequence").map(str::to_string),
                        });
                    }
                }
                if let Some(u) = o.get("usage").and_then(Value::as_object) {
                    // Cache figures may come at the start, the end, or both.
                    let mut merged = self.start_usage.clone().unwrap_or_default();
                    for (k, v) in u {
                        if !v.is_null() {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                    out.push(StreamEvent::Usage(usage_from(&merged, None)));
                }
            }
            "message_stop" => {
                self.done = true;
                out.push(StreamEvent::Done);
            }
            "error" => {
                let e = o.get("error").and_then(Value::as_object);
                let kind = e.and_then(|e| str_at(e, "type")).unwrap_or("api_error");
                let msg = e
                    .and_then(|e| str_at(e, "message"))
                    .unwrap_or("upstream error");
                out.push(StreamEvent::Error(
                    ProviderError::new(super::status_for(kind), msg).with_code(kind),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), CodecError> {
        if self.done {
            Ok(())
        } else {
            Err(upstream(NAME, "stream", "ended without message_stop"))
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Text(u32),
    Tool(u32),
}

pub struct Encoder {
    started: bool,
    next_block: u32,
    open: Option<Block>,
    tool_blocks: HashMap<u32, u32>,
    finish: Option<(FinishReason, Option<String>)>,
    usage: Option<Usage>,
    stopped: bool,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            started: false,
            next_block: 0,
            open: None,
            tool_blocks: HashMap::new(),
            finish: None,
            usage: None,
            stopped: false,
        }
    }

    fn emit(out: &mut Vec<u8>, name: &str, data: Value) {
        write_event(out, Some(name), &data.to_string());
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(Block::Text(i) | Block::Tool(i)) = self.open.take() {
            Self::emit(
                out,
                "content_block_stop",
                json!({"type": "content_block_stop", "index": i}),
            );
        }
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.event(
                &StreamEvent::Start {
                    id: String::new(),
                    model: String::new(),
                    created: 0,
                    prompt_tokens: None,
                },
                out,
            );
        }
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.stopped {
            return;
        }
        match ev {
            StreamEvent::Start {
                id,
                model,
                prompt_tokens,
                ..
            } => {
                if self.started {
                    return;
                }
                self.started = true;
                Self::emit(
                    out,
                    "message_start",
                    json!({"type": "message_start", "message": {
                        "id": id, "type": "message", "role": "assistant", "model": model,
                        "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": prompt_tokens.unwrap_or(0), "output_tokens": 0},
                    }}),
                );
            }
            StreamEvent::Text { index: 0, text } => {
                self.ensure_started(out);
                let i = match self.open {
                    Some(Block::Text(i)) => i,
                    _ => {
                        self.close(out);
                        let i = self.next_block;
                        self.next_block += 1;
                        self.open = Some(Block::Text(i));
                        Self::emit(
                            out,
                            "content_block_start",
                            json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                        );
                        i
                    }
                };
                Self::emit(
                    out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": text}}),
                );
            }
            StreamEvent::ToolCallStart {
                index: 0,
                call,
                id,
                name,
            } => {
                self.ensure_started(out);
                self.close(out);
                let i = self.next_block;
                self.next_block += 1;
                self.open = Some(Block::Tool(i));
                self.tool_blocks.insert(*call, i);
                Self::emit(
                    out,
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                );
            }
            StreamEvent::ToolCallArgs {
                index: 0,
                call,
                fragment,
            } => {
                if let Some(i) = self.tool_blocks.get(call) {
                    Self::emit(
                        out,
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": fragment}}),
                    );
                }
            }
            StreamEvent::Finish {
                index: 0,
                reason,
                stop_sequence,
            } => {
                self.close(out);
                self.finish = Some((reason.clone(), stop_sequence.clone()));
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Error(e) => {
                out.extend_from_slice(&super::stream_error(e));
                self.stopped = true;
            }
            StreamEvent::Done => {
                self.ensure_started(out);
                self.close(out);
                let (reason, seq) = self.finish.take().unzip();
                let seq = seq.flatten();
                let usage = self.usage.unwrap_or_default();
                let mut u = usage_json(&usage);
                if let Some(m) = u.as_object_mut() {
                    m.remove("cache_creation_input_tokens");
                    m.remove("cache_read_input_tokens");
                }
                Self::emit(
                    out,
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(reason.as_ref(), seq.as_deref()), "stop_sequence": seq}, "usage": u}),
                );
                Self::emit(out, "message_stop", json!({"type": "message_stop"}));
                self.stopped = true;
            }
            // Anthropic has one choice; further ones have nowhere to go.
            _ => {}
        }
    }
}
