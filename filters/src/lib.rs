//! Body filters over the canonical types: token counting, PII masking,
//! guardrails. No I/O. A `Chain` is compiled once from config; each request
//! gets a `ChainRun` holding the filters' per-request state.

pub mod config;
pub mod guard;
pub mod pii;
pub mod tokens;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_providers::{ChatRequest, ChatResponse, StreamEvent, TextRequest, Usage};

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
    /// Time spent in each filter (both directions, every stream event),
    /// one entry per filter in chain order; zero for one that never ran.
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
    /// `on_request` for a text-only request, when the filter would leave
    /// it as it is: the same findings and refusals, and `Ok(true)`. A
    /// filter that would change it answers `Ok(false)` before it changed
    /// anything in `cx`, and is then given the decoded request.
    fn look(&mut self, _req: &TextRequest<'_>, _cx: &mut FilterCx) -> Result<bool, Reject> {
        Ok(false)
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
                timings: self
                    .factories
                    .iter()
                    .map(|f| (f.name(), Duration::ZERO))
                    .collect(),
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

/// Times filters run one after another: one clock read between two
/// filters, not two per filter.
struct Clock(Instant);

impl Clock {
    fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Adds the time since the last lap to filter `i`.
    fn lap(&mut self, cx: &mut FilterCx, i: usize) {
        let now = Instant::now();
        if let Some((_, t)) = cx.timings.get_mut(i) {
            *t += now - self.0;
        }
        self.0 = now;
    }
}

impl ChainRun {
    /// Request side, in config order.
    pub fn request(&mut self, req: &mut ChatRequest) -> Result<(), Reject> {
        let mut clock = Clock::start();
        for (i, f) in self.filters.iter_mut().enumerate() {
            let out = f.on_request(req, &mut self.cx);
            clock.lap(&mut self.cx, i);
            out?;
        }
        Ok(())
    }

    /// Request side for a text-only request, in config order, when no
    /// filter would change it; `None` when one would, with what the filters
    /// before it found undone: the caller then decodes the request and
    /// calls `request`. One clock read a filter, as in `request`.
    pub fn look(&mut self, req: &TextRequest<'_>) -> Option<Result<(), Reject>> {
        let mut clock = Clock::start();
        let (headers, detections, estimate) = (
            self.cx.headers.len(),
            self.cx.detections.clone(),
            self.cx.prompt_estimate,
        );
        for (i, f) in self.filters.iter_mut().enumerate() {
            let out = f.look(req, &mut self.cx);
            clock.lap(&mut self.cx, i);
            match out {
                Ok(true) => {}
                Ok(false) => {
                    self.cx.headers.truncate(headers);
                    self.cx.detections = detections;
                    self.cx.prompt_estimate = estimate;
                    return None;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(()))
    }

    /// Bare texts (embeddings inputs, completion prompts), one user message
    /// each, through the filters that apply to them.
    pub fn texts(&mut self, req: &mut ChatRequest) -> Result<(), Reject> {
        let mut clock = Clock::start();
        for (i, f) in self.filters.iter_mut().enumerate() {
            if f.for_texts() {
                let out = f.on_request(req, &mut self.cx);
                clock.lap(&mut self.cx, i);
                out?;
            }
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
        let mut clock = Clock::start();
        for (i, f) in self.filters.iter_mut().enumerate().rev() {
            let out = f.on_response(resp, &mut self.cx);
            clock.lap(&mut self.cx, i);
            out?;
        }
        Ok(())
    }
}

impl sluice_providers::EventHook for ChainRun {
    fn events(&mut self, events: &mut Vec<StreamEvent>) {
        let mut clock = Clock::start();
        for (i, f) in self.filters.iter_mut().enumerate().rev() {
            f.on_events(events, &mut self.cx);
            clock.lap(&mut self.cx, i);
        }
    }

    fn end(&mut self, events: &mut Vec<StreamEvent>) {
        for f in self.filters.iter_mut().rev() {
            f.on_end(events, &mut self.cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_providers::{EventHook, Format, Message, Role};

    #[test]
    fn each_filter_has_one_timing_summed_over_its_calls() {
        let cfg: FiltersConfig = serde_json::from_value(serde_json::json!({
            "guardrails": {"prompt_injection": "block"},
            "token_count": {}
        }))
        .unwrap();
        let chain = Chain::compile(&cfg).unwrap();
        let mut run = chain.start("gpt-4o");
        let names = |run: &ChainRun| run.cx.timings.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        assert_eq!(names(&run), ["guardrails", "token_count"]);
        assert!(run.cx.timings.iter().all(|(_, t)| t.is_zero()));
        let mut req = ChatRequest::new(Format::OpenAi, "gpt-4o");
        req.messages.push(Message::text(Role::User, "hello there"));
        run.request(&mut req).unwrap();
        let after_request: Vec<Duration> = run.cx.timings.iter().map(|(_, t)| *t).collect();
        assert!(after_request.iter().all(|t| !t.is_zero()));
        run.events(&mut Vec::new());
        run.events(&mut Vec::new());
        assert_eq!(names(&run), ["guardrails", "token_count"]);
        for ((_, t), before) in run.cx.timings.iter().zip(after_request) {
            assert!(*t >= before);
        }
    }
}
