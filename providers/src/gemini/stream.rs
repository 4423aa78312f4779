//! Gemini `streamGenerateContent?alt=sse` ⇄ canonical events. Gemini has no
//! terminal event: the stream is complete when a candidate has finished.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::response::{finish_from, finish_str, read_parts, usage_from, usage_json};
use crate::canonical::*;
use crate::codec::{ResponseMeta, StreamDecoder, StreamEncoder};
use crate::error::CodecError;
use crate::json::*;
use crate::sse::{write_event, SseEvent};

const NAME: &str = "gemini";

pub struct Decoder {
    meta: ResponseMeta,
    started: bool,
    finished: bool,
    /// Tool calls seen per candidate.
    calls: HashMap<u32, u32>,
    usage: Option<Usage>,
}

impl Decoder {
    pub fn new(meta: &ResponseMeta) -> Decoder {
        Decoder {
            meta: meta.clone(),
            started: false,
            finished: false,
            calls: HashMap::new(),
            usage: None,
        }
    }
}

impl StreamDecoder for Decoder {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), CodecError> {
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| upstream(NAME, "stream chunk", e.to_string()))?;
        // Errors may arrive as an object or wrapped in an array.
        let err = v
            .get("error")
            .or_else(|| v.get(0).and_then(|x| x.get("error")))
            .and_then(Value::as_object);
        if let Some(e) = err {
            out.push(StreamEvent::Error(super::error_from(e)));
            return Ok(());
        }
        let o = v
            .as_object()
            .ok_or_else(|| upstream(NAME, "stream chunk", "not a JSON object"))?;
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: str_at(o, "responseId").map_or_else(|| self.meta.id.clone(), str::to_string),
                model: str_at(o, "modelVersion").unwrap_or("").to_string(),
                created: self.meta.created,
                prompt_tokens: None,
            });
        }
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
            if let Some(t) = text.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::Text { index, text: t });
            }
            for (name, args) in calls {
                let n = self.calls.entry(index).or_insert(0);
                let call = *n;
                *n += 1;
                out.push(StreamEvent::ToolCallStart {
                    index,
                    call,
                    id: format!("call_{index}_{call}"),
                    name,
                });
                out.push(StreamEvent::ToolCallArgs {
                    index,
                    call,
                    fragment: args,
                });
            }
            if let Some(r) = str_at(c, "finishReason") {
                self.finished = true;
                let called = self.calls.get(&index).is_some_and(|n| *n > 0);
                out.push(StreamEvent::Finish {
                    index,
                    reason: finish_from(r, called),
                    stop_sequence: None,
                });
            }
        }
        if o.get("promptFeedback")
            .and_then(Value::as_object)
            .and_then(|f| str_at(f, "blockReason"))
            .is_some()
        {
            self.finished = true;
            out.push(StreamEvent::Finish {
                index: 0,
                reason: FinishReason::ContentFilter,
                stop_sequence: None,
            });
        }
        if let Some(u) = o.get("usageMetadata").and_then(Value::as_object) {
            self.usage = Some(usage_from(u));
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), CodecError> {
        if !self.finished {
            return Err(upstream(
                NAME,
                "stream",
                "ended before any candidate finished",
            ));
        }
        if let Some(u) = self.usage.take() {
            out.push(StreamEvent::Usage(u));
        }
        out.push(StreamEvent::Done);
        Ok(())
    }
}

/// Gemini-shaped stream, for tests and round trips; function calls are
/// sent whole, as Gemini does.
#[derive(Default)]
pub struct Encoder {
    id: String,
    model: String,
    pending: HashMap<(u32, u32), (String, String)>,
    usage: Option<Usage>,
}

impl Encoder {
    fn chunk(&self, candidates: Value, out: &mut Vec<u8>) {
        let mut o =
            json!({"candidates": candidates, "modelVersion": self.model, "responseId": self.id});
        if let (Some(u), Some(m)) = (&self.usage, o.as_object_mut()) {
            m.insert("usageMetadata".into(), usage_json(u));
        }
        write_event(out, None, &o.to_string());
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        match ev {
            StreamEvent::Start { id, model, .. } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
            }
            StreamEvent::Text { index, text } => self.chunk(
                json!([{"content": {"role": "model", "parts": [{"text": text}]}, "index": index}]),
                out,
            ),
            StreamEvent::ToolCallStart {
                index, call, name, ..
            } => {
                self.pending
                    .insert((*index, *call), (name.clone(), String::new()));
            }
            StreamEvent::ToolCallArgs {
                index,
                call,
                fragment,
            } => {
                if let Some((_, args)) = self.pending.get_mut(&(*index, *call)) {
                    args.push_str(fragment);
                }
            }
            StreamEvent::Finish { index, reason, .. } => {
                let mut calls: Vec<_> = self
                    .pending
                    .iter()
                    .filter(|((i, _), _)| i == index)
                    .map(|((_, c), v)| (*c, v.clone()))
                    .collect();
                calls.sort_by_key(|(c, _)| *c);
                let parts: Vec<Value> = calls
                    .into_iter()
                    .map(|(_, (name, args))| {
                        let args: Value = serde_json::from_str(&args).unwrap_or(json!({}));
                        json!({"functionCall": {"name": name, "args": args}})
                    })
                    .collect();
                self.chunk(
                    json!([{"content": {"role": "model", "parts": parts}, "finishReason": finish_str(reason), "index": index}]),
                    out,
                );
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Error(e) => out.extend_from_slice(&super::stream_error(e)),
            StreamEvent::Done => {}
        }
    }
}
