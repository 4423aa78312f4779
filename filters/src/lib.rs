//! Body filters over the canonical types: token counting, PII masking,
//! guardrails. No I/O. A `Chain` is compiled once from config; each request
//! gets a `ChainRun` holding the filters' per-request state.

pub mod config;
pub mod guard;
pub mod pii;
pub mod tokens;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_providers::{ChatRequest, ChatResponse, StreamEvent, Usage};

pub use config::FiltersConfig;

/// A filter refused the request: rendered in the client's error format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    /// Low-cardinality reason for metrics (`pii_blocked`, `prompt_injection`).
    pub kind: &'static str,
    pub message: String,
}

/// What filters learn about one request; the gateway turns it into headers,
/// metrics and the access log. Never holds request content.
#[derive(Debug, Default)]
pub struct FilterCx {
    /// The model name the upstream sees (tokenizers are chosen by it).
    pub upstream_model: String,
    /// Response headers to add, e.g. `x-sluice-guardrail`.
    pub headers: Vec<(&'static str, String)>,
    /// Detections by type, for metrics.
    pub detections: BTreeMap<&'static str, u64>,
    /// Prompt tokens estimated before dispatch.
    pub prompt_estimate: Option<u64>,
    /// Usage as reported by the upstream, or counted when it reported none.
    pub usage: Option<Usage>,
    /// Time spent in each filter.
    pub timings: Vec<(&'static str, Duration)>,
    /// A filter changed the request: it must be re-encoded.
    pub request_modified: bool,
    /// A filter changed the response: it must be re-encoded.
    pub response_modified: bool,
}

impl FilterCx {
    pub fn count_detection(&mut self, kind: &'static str) {
        *self.detections.entry(kind).or_insert(0) += 1;
    }
}

pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;
    fn on_request(&mut self, _req: &mut ChatRequest, _cx: &mut FilterCx) -> Result<(), Reject> {
        Ok(())
    }
    fn on_response(&mut self, _resp: &mut ChatResponse, _cx: &mut FilterCx) -> Result<(), Reject> {
        Ok(())
    }
    /// Rewrite, drop or insert stream events in place.
    fn on_events(&mut self, _events: &mut Vec<StreamEvent>, _cx: &mut FilterCx) {}
    /// The stream ended (however it ended): last chance to emit held events.
    fn on_end(&mut self, _events: &mut Vec<StreamEvent>, _cx: &mut FilterCx) {}
    /// Whether the filter must see the response's content (not just usage).
    fn needs_response(&self) -> bool {
        false
    }
    /// Whether the filter also applies to bare texts (embeddings inputs,
    /// legacy completion prompts), not only to conversations.
    fn for_texts(&self) -> bool {
        true
    }
}

/// Built once from config; makes one `Filter` per request.
pub trait FilterFactory: Send + Sync {
    fn name(&self) -> &'static str;
    fn instance(&self) -> Box<dyn Filter>;
}

/// The compiled filters of one model, in config order.
#[derive(Default)]
pub struct Chain {
    factories: Vec<Box<dyn FilterFactory>>,
    pub token_count: Option<config::TokenCountConfig>,
}

impl Chain {
    pub fn compile(cfg: &FiltersConfig) -> Result<Chain, String> {
        let mut factories: Vec<Box<dyn FilterFactory>> = Vec::new();
        if let Some(g) = &cfg.guardrails {
            factories.push(Box::new(guard::GuardFactory::new(g)));
        }
        if let Some(p) = &cfg.pii {
            factories.push(Box::new(pii::PiiFactory::new(p)?));
        }
        if let Some(t) = &cfg.token_count {
            factories.push(Box::new(tokens::TokenCountFactory::new(t)));
        }
        Ok(Chain {
            factories,
            token_count: cfg.token_count.clone(),
        })
    }

    /// Whether requests must be decoded for these filters.
    pub fn is_empty(&self) -> bool {
        self.factories.is_empty()
    }

    pub fn start(&self, upstream_model: &str) -> ChainRun {
        ChainRun {
            filters: self.factories.iter().map(|f| f.instance()).collect(),
            cx: FilterCx {
                upstream_model: upstream_model.to_string(),
                ..FilterCx::default()
            },
        }
    }
}

/// One request's filter instances and what they learnt.
pub struct ChainRun {
    filters: Vec<Box<dyn Filter>>,
    pub cx: FilterCx,
}

impl ChainRun {
    fn timed<T>(cx: &mut FilterCx, name: &'static str, f: impl FnOnce(&mut FilterCx) -> T) -> T {
        let t = Instant::now();
        let out = f(cx);
        cx.timings.push((name, t.elapsed()));
        out
    }

    /// Request side, in config order.
    pub fn request(&mut self, req: &mut ChatRequest) -> Result<(), Reject> {
        for f in &mut self.filters {
            let name = f.name();
            Self::timed(&mut self.cx, name, |cx| f.on_request(req, cx))?;
        }
        Ok(())
    }

    /// Bare texts (embeddings inputs, completion prompts), one user message
    /// each, through the filters that apply to them.
    pub fn texts(&mut self, req: &mut ChatRequest) -> Result<(), Reject> {
        for f in self.filters.iter_mut().filter(|f| f.for_texts()) {
            let name = f.name();
            Self::timed(&mut self.cx, name, |cx| f.on_request(req, cx))?;
        }
        Ok(())
    }

    /// Whether any filter must see the response's content; if not, the
    /// caller may forward it unchanged and report only its usage.
    pub fn needs_response(&self) -> bool {
        self.filters.iter().any(|f| f.needs_response())
    }

    /// Response side, in reverse order.
    pub fn response(&mut self, resp: &mut ChatResponse) -> Result<(), Reject> {
        for f in self.filters.iter_mut().rev() {
            let name = f.name();
            Self::timed(&mut self.cx, name, |cx| f.on_response(resp, cx))?;
        }
        Ok(())
    }
}

impl sluice_providers::EventHook for ChainRun {
    fn events(&mut self, events: &mut Vec<StreamEvent>) {
        for f in self.filters.iter_mut().rev() {
            let name = f.name();
            Self::timed(&mut self.cx, name, |cx| f.on_events(events, cx));
        }
    }

    fn end(&mut self, events: &mut Vec<StreamEvent>) {
        for f in self.filters.iter_mut().rev() {
            f.on_end(events, &mut self.cx);
        }
    }
}
