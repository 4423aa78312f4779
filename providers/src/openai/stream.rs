//! OpenAI `chat.completion.chunk` streams ⇄ canonical events.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use super::response::{finish_from, finish_str, usage_from, usage_json};
use crate::canonical::*;
use crate::codec::{ResponseMeta, StreamDecoder, StreamEncoder};
use crate::error::{CodecError, ProviderError};
use crate::json::*;
use crate::sse::{write_event, SseEvent};

const NAME: &str = "openai";

pub struct Decoder {
    meta: ResponseMeta,
    started: bool,
    done: bool,
    /// (choice, tool index) pairs already announced.
    calls: HashSet<(u32, u32)>,
}

impl Decoder {
    pub fn new(meta: &ResponseMeta) -> Decoder {
        Decoder {
            meta: meta.clone(),
            started: false,
            done: false,
            calls: HashSet::new(),
        }
    }
}

impl StreamDecoder for Decoder {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), CodecError> {
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            out.push(StreamEvent::Done);
            return Ok(());
        }
        let o = upstream_object(data.as_bytes(), NAME, "stream chunk")?;
        if let Some(e) = o.get("error").and_then(Value::as_object) {
            let status = e
                .get("code")
                .and_then(Value::as_u64)
                .map_or(500, |c| c as u16);
            out.push(StreamEvent::Error(super::error_from(status, e)));
            return Ok(());
        }
        let choices = o.get("choices").and_then(Value::as_array);
        let usage = o.get("usage").and_then(Value::as_object);
        if choices.is_none_or(Vec::is_empty) && usage.is_none() {
            // Azure's content-filter annotations: nothing for the client.
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: str_at(&o, "id").map_or_else(|| self.meta.id.clone(), str::to_string),
                model: str_at(&o, "model").unwrap_or("").to_string(),
                created: o
                    .get("created")
                    .and_then(Value::as_u64)
                    .unwrap_or(self.meta.created),
                prompt_tokens: None,
            });
        }
        for c in o
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
        {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0) as u32;
            if let Some(d) = c.get("delta").and_then(Value::as_object) {
                if let Some(t) = str_at(d, "content").or(str_at(d, "refusal")) {
                    if !t.is_empty() {
                        out.push(StreamEvent::Text {
                            index,
                            text: t.to_string(),
                        });
                    }
                }
                for tc in d
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_object)
                {
                    let call = tc.get("index").and_then(Value::as_u64).unwrap_or(0) as u32;
                    let f = tc.get("function").and_then(Value::as_object);
                    if self.calls.insert((index, call)) {
                        out.push(StreamEvent::ToolCallStart {
                            index,
                            call,
                            id: str_at(tc, "id")
                                .map_or_else(|| format!("call_{index}_{call}"), str::to_string),
                            name: f.and_then(|f| str_at(f, "name")).unwrap_or("").to_string(),
                        });
                    }
                    if let Some(args) = f.and_then(|f| str_at(f, "arguments")) {
                        if !args.is_empty() {
                            out.push(StreamEvent::ToolCallArgs {
                                index,
                                call,
                                fragment: args.to_string(),
                            });
                        }
                    }
                }
            }
            if let Some(f) = str_at(c, "finish_reason") {
                out.push(StreamEvent::Finish {
                    index,
                    reason: finish_from(f),
                    stop_sequence: None,
                });
            }
        }
        if let Some(u) = o.get("usage").and_then(Value::as_object) {
            out.push(StreamEvent::Usage(usage_from(u)));
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), CodecError> {
        if self.done {
            Ok(())
        } else {
            Err(upstream(NAME, "stream", "ended without [DONE]"))
        }
    }
}

pub struct Encoder {
    include_usage: bool,
    id: String,
    model: String,
    created: u64,
}

impl Encoder {
    pub fn new(include_usage: bool) -> Encoder {
        Encoder {
            include_usage,
            id: String::new(),
            model: String::new(),
            created: 0,
        }
    }

    fn chunk(&self, choices: Value, usage: Option<Value>, out: &mut Vec<u8>) {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        o.insert("object".into(), json!("chat.completion.chunk"));
        o.insert("created".into(), json!(self.created));
        o.insert("model".into(), json!(self.model));
        o.insert("choices".into(), choices);
        if let Some(u) = usage {
            o.insert("usage".into(), u);
        }
        write_event(out, None, &Value::Object(o).to_string());
    }

    fn delta(&self, index: u32, delta: Value, out: &mut Vec<u8>) {
        self.chunk(
            json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}]),
            None,
            out,
        );
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match ev {
            StreamEvent::Start {
                id, model, created, ..
            } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
                self.created = *created;
                self.delta(0, json!({"role": "assistant", "content": ""}), out);
            }
            StreamEvent::Text { index, text } => self.delta(*index, json!({"content": text}), out),
            StreamEvent::ToolCallStart {
                index,
                call,
                id,
                name,
            } => self.delta(
                *index,
                json!({"tool_calls": [{"index": call, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                out,
            ),
            StreamEvent::ToolCallArgs {
                index,
                call,
                fragment,
            } => self.delta(
                *index,
                json!({"tool_calls": [{"index": call, "function": {"arguments": fragment}}]}),
                out,
            ),
            StreamEvent::Finish { index, reason, .. } => self.chunk(
                json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": finish_str(reason)}]),
                None,
                out,
            ),
            StreamEvent::Usage(u) => {
                if self.include_usage {
                    self.chunk(json!([]), Some(usage_json(u)), out);
                }
            }
            StreamEvent::Error(e) => out.extend_from_slice(&stream_error(e)),
            StreamEvent::Done => write_event(out, None, "[DONE]"),
        }
    }
}

pub fn stream_error(e: &ProviderError) -> Vec<u8> {
    let mut out = Vec::new();
    write_event(
        &mut out,
        None,
        &String::from_utf8_lossy(&super::encode_error(e)),
    );
    out
}
