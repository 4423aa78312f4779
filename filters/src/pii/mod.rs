//! PII masking on request text (every message, part, tool argument and tool
//! result) and optionally on model output; `reversible` restores originals
//! in what the client receives, streams included.

mod detect;
mod vault;

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use sluice_providers::{ChatRequest, ChatResponse, Part, StreamEvent, TextRequest};

pub use detect::{iban_valid, luhn, ssn_valid, Detectors};
use vault::{Restorer, Vault};

use crate::config::{PiiAction, PiiConfig};
use crate::{Filter, FilterCx, FilterFactory, Reject};

/// Output held back while scanning a stream for PII that spans events.
const WINDOW: usize = 128;

pub struct PiiFactory {
    detectors: Arc<Detectors>,
    responses: bool,
    key: Vec<u8>,
}

impl PiiFactory {
    pub fn new(cfg: &PiiConfig) -> Result<PiiFactory, String> {
        let detectors = Detectors::new(&cfg.detectors, &cfg.custom, &cfg.deny_list, cfg.action)?;
        let key = match &cfg.hash_key {
            None => b"sluice-pii".to_vec(),
            Some(r) => {
                let name = r
                    .strip_prefix("${")
                    .and_then(|r| r.strip_suffix('}'))
                    .ok_or("hash_key must be an ${ENV_VAR} reference")?;
                std::env::var(name)
                    .map_err(|_| format!("hash_key: environment variable {name} is not set"))?
                    .into_bytes()
            }
        };
        Ok(PiiFactory {
            detectors: Arc::new(detectors),
            responses: cfg.responses,
            key,
        })
    }

    pub fn detectors(&self) -> &Detectors {
        &self.detectors
    }
}

impl FilterFactory for PiiFactory {
    fn name(&self) -> &'static str {
        "pii"
    }

    fn instance(&self) -> Box<dyn Filter> {
        Box::new(Pii {
            detectors: self.detectors.clone(),
            responses: self.responses,
            key: self.key.clone(),
            vault: Vault::default(),
            restorer: Restorer::default(),
            window: Default::default(),
        })
    }
}

pub struct Pii {
    detectors: Arc<Detectors>,
    responses: bool,
    key: Vec<u8>,
    vault: Vault,
    restorer: Restorer,
    /// Output text held per choice while scanning for PII (non-reversible).
    window: std::collections::BTreeMap<u32, String>,
}

impl Pii {
    /// The text with every detection replaced; `None` if nothing was found.
    fn mask(
        &mut self,
        text: &str,
        cx: &mut FilterCx,
        blocked: &mut Vec<String>,
        output: bool,
    ) -> Option<String> {
        let found = self.detectors.find(text);
        self.apply(text, found, cx, blocked, output)
    }

    /// Replaces the detections `found` in `text`.
    fn apply(
        &mut self,
        text: &str,
        found: Vec<detect::Found>,
        cx: &mut FilterCx,
        blocked: &mut Vec<String>,
        output: bool,
    ) -> Option<String> {
        if found.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for f in found {
            let kind = &self.detectors.kinds[f.kind];
            let value = &text[f.start..f.end];
            cx.count_detection(kind.metric);
            out.push_str(&text[last..f.start]);
            let action = match kind.action {
                // Output is masked for real; restoring would undo it.
                PiiAction::Reversible | PiiAction::Block if output => PiiAction::Redact,
                a => a,
            };
            match action {
                PiiAction::Redact => {
                    out.push('[');
                    out.push_str(&kind.label);
                    out.push(']');
                }
                PiiAction::Mask => {
                    let n = value.chars().count();
                    out.extend(std::iter::repeat_n('*', n.saturating_sub(4)));
                    out.extend(value.chars().skip(n.saturating_sub(4)));
                }
                PiiAction::Hash => {
                    out.push('[');
                    out.push_str(&kind.label);
                    out.push(':');
                    out.push_str(&self.digest(value));
                    out.push(']');
                }
                PiiAction::Block => {
                    blocked.push(kind.label.to_ascii_lowercase());
                    out.push_str(value);
                }
                PiiAction::Reversible => out.push_str(&self.vault.placeholder(&kind.label, value)),
            }
            last = f.end;
        }
        out.push_str(&text[last..]);
        Some(out)
    }

    fn digest(&self, value: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(value.as_bytes());
        mac.finalize().into_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Tool arguments are JSON text: mask string values, keep it valid JSON.
    fn mask_arguments(
        &mut self,
        args: &str,
        cx: &mut FilterCx,
        blocked: &mut Vec<String>,
    ) -> Option<String> {
        match serde_json::from_str::<Value>(args) {
            Ok(mut v) => {
                let changed = self.mask_value(&mut v, cx, blocked);
                changed.then(|| v.to_string())
            }
            Err(_) => self.mask(args, cx, blocked, false),
        }
    }

    fn mask_value(&mut self, v: &mut Value, cx: &mut FilterCx, blocked: &mut Vec<String>) -> bool {
        match v {
            Value::String(s) => match self.mask(s, cx, blocked, false) {
                Some(m) => {
                    *s = m;
                    true
                }
                None => false,
            },
            Value::Array(a) => a
                .iter_mut()
                .fold(false, |c, x| self.mask_value(x, cx, blocked) | c),
            Value::Object(o) => o
                .values_mut()
                .fold(false, |c, x| self.mask_value(x, cx, blocked) | c),
            _ => false,
        }
    }

    /// Masks output text arriving in pieces, holding back a window so a
    /// value split across events is still seen whole.
    fn window_feed(&mut self, index: u32, piece: &str, end: bool, cx: &mut FilterCx) -> String {
        let mut buf = self.window.remove(&index).unwrap_or_default();
        buf.push_str(piece);
        let mut cut = if end {
            buf.len()
        } else {
            buf.len().saturating_sub(WINDOW)
        };
        if !end {
            // Never cut through a detection that runs past the cut.
            for f in self.detectors.find(&buf) {
                if f.start < cut && f.end > cut {
                    cut = f.start;
                }
            }
        }
        while !buf.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = buf.split_off(cut);
        let mut ignored = Vec::new();
        let out = self.mask(&buf, cx, &mut ignored, true).unwrap_or(buf);
        if !rest.is_empty() {
            self.window.insert(index, rest);
        }
        out
    }
}

impl Filter for Pii {
    fn name(&self) -> &'static str {
        "pii"
    }

    fn needs_response(&self) -> bool {
        !self.vault.is_empty() || self.responses
    }

    fn on_request(&mut self, req: &mut ChatRequest, cx: &mut FilterCx) -> Result<(), Reject> {
        let mut blocked = Vec::new();
        for msg in &mut req.messages {
            for part in &mut msg.content {
                if let Part::Text(t) = part {
                    if let Some(m) = self.mask(t, cx, &mut blocked, false) {
                        *t = m;
                        cx.request_modified = true;
                    }
                }
            }
            for call in &mut msg.tool_calls {
                if let Some(m) = self.mask_arguments(&call.arguments, cx, &mut blocked) {
                    call.arguments = m;
                    cx.request_modified = true;
                }
            }
        }
        if blocked.is_empty() {
            return Ok(());
        }
        blocked.sort();
        blocked.dedup();
        Err(Reject {
            status: 400,
            kind: "pii_blocked",
            message: format!(
                "The request contains personal or secret data ({}) and was refused",
                blocked.join(", ")
            ),
        })
    }

    /// Looks only when nothing in the request is found: masking or
    /// blocking needs the decoded request.
    fn look(&mut self, req: &TextRequest<'_>, _cx: &mut FilterCx) -> Result<bool, Reject> {
        Ok(req
            .text_parts()
            .all(|(_, _, t)| self.detectors.find(t).is_empty()))
    }

    fn on_response(&mut self, resp: &mut ChatResponse, cx: &mut FilterCx) -> Result<(), Reject> {
        for c in &mut resp.choices {
            if !self.vault.is_empty() {
                if let Some(t) = &mut c.text {
                    let r = self.vault.restore(t, false);
                    cx.response_modified |= r != *t;
                    *t = r;
                }
                for call in &mut c.tool_calls {
                    let r = self.vault.restore(&call.arguments, true);
                    cx.response_modified |= r != call.arguments;
                    call.arguments = r;
                }
            } else if self.responses {
                let mut ignored = Vec::new();
                if let Some(t) = c.text.clone() {
                    if let Some(m) = self.mask(&t, cx, &mut ignored, true) {
                        c.text = Some(m);
                        cx.response_modified = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn on_events(&mut self, events: &mut Vec<StreamEvent>, cx: &mut FilterCx) {
        let restoring = !self.vault.is_empty();
        if !restoring && !self.responses {
            return;
        }
        let mut out = Vec::with_capacity(events.len());
        for ev in events.drain(..) {
            match ev {
                StreamEvent::Text { index, text } => {
                    let t = if restoring {
                        self.restorer.feed(&self.vault, (index, None), &text)
                    } else {
                        self.window_feed(index, &text, false, cx)
                    };
                    if !t.is_empty() {
                        out.push(StreamEvent::Text { index, text: t });
                    }
                }
                StreamEvent::ToolCallArgs {
                    index,
                    call,
                    fragment,
                } if restoring => {
                    let f = self
                        .restorer
                        .feed(&self.vault, (index, Some(call)), &fragment);
                    if !f.is_empty() {
                        out.push(StreamEvent::ToolCallArgs {
                            index,
                            call,
                            fragment: f,
                        });
                    }
                }
                ev @ (StreamEvent::Finish { .. } | StreamEvent::Done | StreamEvent::Error(_)) => {
                    self.flush(&mut out, cx);
                    out.push(ev);
                }
                ev => out.push(ev),
            }
        }
        *events = out;
    }

    fn on_end(&mut self, events: &mut Vec<StreamEvent>, cx: &mut FilterCx) {
        self.flush(events, cx);
    }
}

impl Pii {
    fn flush(&mut self, out: &mut Vec<StreamEvent>, cx: &mut FilterCx) {
        for key in self.restorer.keys() {
            let rest = self.restorer.flush(&self.vault, key);
            if rest.is_empty() {
                continue;
            }
            out.push(match key {
                (index, None) => StreamEvent::Text { index, text: rest },
                (index, Some(call)) => StreamEvent::ToolCallArgs {
                    index,
                    call,
                    fragment: rest,
                },
            });
        }
        let held: Vec<u32> = self.window.keys().copied().collect();
        for index in held {
            let text = self.window_feed(index, "", true, cx);
            if !text.is_empty() {
                out.push(StreamEvent::Text { index, text });
            }
        }
    }
}

#[cfg(test)]
mod tests;
