//! Token counting: prompt tokens estimated before dispatch with the model
//! family's tokenizer (tiktoken), usage taken from the upstream when it
//! reports it, and counted from the streamed text when it does not.

use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{LazyLock, Mutex};

use lru::LruCache;
use sluice_providers::{ChatRequest, ChatResponse, Role, StreamEvent, TextRequest, Usage};
use tiktoken_rs::CoreBPE;

use crate::config::TokenCountConfig;
use crate::{Filter, FilterCx, FilterFactory, Reject};

/// Model-name prefixes of each family, lower-case, at most `HEAD` bytes.
const O200K: &[&str] = &[
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-5",
    "gpt-oss",
    "o1",
    "o3",
    "o4",
];
const CL100K: &[&str] = &["gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada"];
/// How much of a name is lower-cased to be matched against the prefixes.
const HEAD: usize = 24;

/// The encoding OpenAI uses for a model family; `None` for other families.
pub fn encoding_for(model: &str) -> Option<&'static CoreBPE> {
    // A plain loop: `rsplit` sets up a SIMD search, costly on names this short.
    let m = match model.bytes().rposition(|b| b == b'/') {
        Some(i) => &model[i + 1..],
        None => model,
    };
    // Case-insensitive prefixes: the name's start lower-cased once, on the
    // stack (a comparison per prefix ignoring case cost ten times as much).
    let mut head = [0u8; HEAD];
    let n = m.len().min(head.len());
    head[..n].copy_from_slice(&m.as_bytes()[..n]);
    head.make_ascii_lowercase();
    let starts = |p: &&str| head[..n].starts_with(p.as_bytes());
    if O200K.iter().any(starts) {
        Some(tiktoken_rs::o200k_base_singleton())
    } else if CL100K.iter().any(starts) {
        Some(tiktoken_rs::cl100k_base_singleton())
    } else {
        None
    }
}

/// Token counts of recent texts. Conversations resend their history with
/// every turn, so most of a prompt has been counted before; BPE costs tens
/// of microseconds per KB, a lookup well under one.
struct CountCache {
    shards: Vec<Mutex<LruCache<u64, u32>>>,
}

/// Per-process random seeds, so nobody can aim texts at a colliding key
/// (and an undercount).
static SEEDS: LazyLock<ahash::RandomState> = LazyLock::new(|| {
    let seed = |i: u64| std::collections::hash_map::RandomState::new().hash_one(i);
    ahash::RandomState::with_seeds(seed(1), seed(2), seed(3), seed(4))
});

const SHARDS: usize = 16;

static CACHE: LazyLock<CountCache> = LazyLock::new(|| CountCache {
    shards: (0..SHARDS)
        .map(|_| Mutex::new(LruCache::new(NonZeroUsize::MIN.saturating_add(4095))))
        .collect(),
});

impl CountCache {
    fn get_or(&self, key: u64, count: impl FnOnce() -> u64) -> u64 {
        let shard = &self.shards[(key as usize) % SHARDS];
        if let Some(n) = shard.lock().ok().and_then(|mut s| s.get(&key).copied()) {
            return u64::from(n);
        }
        let n = count();
        if let Ok(mut s) = shard.lock() {
            s.put(key, u32::try_from(n).unwrap_or(u32::MAX));
        }
        n
    }
}

#[derive(Clone, Copy)]
pub struct Counter {
    bpe: Option<&'static CoreBPE>,
    chars_per_token: f64,
}

impl Counter {
    pub fn new(model: &str, chars_per_token: f64) -> Counter {
        Counter {
            bpe: encoding_for(model),
            chars_per_token: chars_per_token.max(0.1),
        }
    }

    pub fn count(&self, text: &str) -> u64 {
        match self.bpe {
            // Short texts too: the tokenizer's fixed cost per call (about a
            // microsecond) dwarfs a hash and a lookup.
            Some(b) if !text.is_empty() => {
                let mut h = SEEDS.build_hasher();
                // The encoding is part of the key: the same text counts differently.
                (b as *const CoreBPE as usize).hash(&mut h);
                text.hash(&mut h);
                CACHE.get_or(h.finish(), || self.count_uncached(text))
            }
            _ => self.count_uncached(text),
        }
    }

    /// Uncached, for measuring the tokenizer itself.
    pub fn count_uncached(&self, text: &str) -> u64 {
        match self.bpe {
            Some(b) => b.encode_ordinary(text).len() as u64,
            None => (text.chars().count() as f64 / self.chars_per_token).ceil() as u64,
        }
    }

    /// Prompt tokens of a chat request, with OpenAI's per-message framing
    /// (about 3 tokens a message and 3 to prime the reply).
    pub fn prompt(&self, req: &ChatRequest) -> u64 {
        let mut n = self.prompt_texts(req.messages.len(), req.text_parts());
        for c in req.messages.iter().flat_map(|m| &m.tool_calls) {
            n += self.count(&c.name) + self.count(&c.arguments);
        }
        for t in &req.tools {
            n += self.count(&t.name) + self.count(&t.parameters.to_string());
            if let Some(d) = &t.description {
                n += self.count(d);
            }
        }
        n
    }

    /// Prompt tokens of `messages` messages with these text parts and
    /// nothing else (no tools, no tool calls).
    pub fn prompt_texts<'t>(
        &self,
        messages: usize,
        parts: impl Iterator<Item = (usize, Role, &'t str)>,
    ) -> u64 {
        3 + 3 * messages as u64 + parts.map(|(_, _, t)| self.count(t)).sum::<u64>()
    }
}

pub struct TokenCountFactory {
    cfg: TokenCountConfig,
}

impl TokenCountFactory {
    pub fn new(cfg: &TokenCountConfig) -> TokenCountFactory {
        // Build the tokenizers now, not on the first request.
        let _ = encoding_for("gpt-4o");
        let _ = encoding_for("gpt-4");
        TokenCountFactory { cfg: cfg.clone() }
    }
}

impl FilterFactory for TokenCountFactory {
    fn name(&self) -> &'static str {
        "token_count"
    }

    fn instance(&self) -> Box<dyn Filter> {
        Box::new(TokenCount {
            chars_per_token: self.cfg.chars_per_token,
            counter: None,
            text: String::new(),
        })
    }
}

pub struct TokenCount {
    chars_per_token: f64,
    counter: Option<Counter>,
    /// Streamed output, counted only if the upstream reports no usage.
    text: String,
}

impl TokenCount {
    fn counter(&mut self, model: &str) -> Counter {
        *self
            .counter
            .get_or_insert_with(|| Counter::new(model, self.chars_per_token))
    }
}

impl Filter for TokenCount {
    fn name(&self) -> &'static str {
        "token_count"
    }

    fn on_request(&mut self, req: &mut ChatRequest, cx: &mut FilterCx) -> Result<(), Reject> {
        let c = self.counter(&cx.upstream_model);
        cx.prompt_estimate = Some(c.prompt(req));
        Ok(())
    }

    fn look(&mut self, req: &TextRequest<'_>, cx: &mut FilterCx) -> Result<bool, Reject> {
        let c = self.counter(&cx.upstream_model);
        cx.prompt_estimate = Some(c.prompt_texts(req.messages, req.text_parts()));
        Ok(true)
    }

    fn on_response(&mut self, resp: &mut ChatResponse, cx: &mut FilterCx) -> Result<(), Reject> {
        cx.usage = match resp.usage {
            Some(u) => Some(u),
            None => {
                let c = self.counter(&cx.upstream_model);
                let completion = resp
                    .choices
                    .iter()
                    .map(|ch| {
                        ch.text.as_deref().map_or(0, |t| c.count(t))
                            + ch.tool_calls
                                .iter()
                                .map(|t| c.count(&t.arguments))
                                .sum::<u64>()
                    })
                    .sum();
                Some(Usage {
                    prompt_tokens: cx.prompt_estimate.unwrap_or(0),
                    completion_tokens: completion,
                    ..Usage::default()
                })
            }
        };
        Ok(())
    }

    fn on_events(&mut self, events: &mut Vec<StreamEvent>, cx: &mut FilterCx) {
        for ev in events.iter() {
            match ev {
                StreamEvent::Usage(u) => cx.usage = Some(*u),
                StreamEvent::Text { text, .. } if cx.usage.is_none() => self.text.push_str(text),
                StreamEvent::ToolCallArgs { fragment, .. } if cx.usage.is_none() => {
                    self.text.push_str(fragment)
                }
                _ => {}
            }
        }
    }

    fn on_end(&mut self, _events: &mut Vec<StreamEvent>, cx: &mut FilterCx) {
        if cx.usage.is_none() {
            let c = self.counter(&cx.upstream_model);
            cx.usage = Some(Usage {
                prompt_tokens: cx.prompt_estimate.unwrap_or(0),
                completion_tokens: c.count(&self.text),
                ..Usage::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use sluice_providers::{Format, Message, Role};

    use super::*;

    #[test]
    fn counts_with_the_model_familys_encoding_or_approximates() {
        assert_eq!(Counter::new("gpt-4o-mini", 4.0).count("hello world"), 2);
        assert_eq!(Counter::new("openai/gpt-4", 4.0).count("hello world"), 2);
        // Unknown family: characters / chars_per_token, rounded up.
        assert_eq!(Counter::new("claude-x", 4.0).count("abcdefghi"), 3);
        let mut r = ChatRequest::new(Format::OpenAi, "m");
        r.messages.push(Message::text(Role::User, "hello world"));
        assert_eq!(Counter::new("gpt-4o", 4.0).prompt(&r), 3 + 3 + 2);
    }

    #[test]
    fn prefixes_are_lower_case_and_fit_the_matched_start() {
        for p in O200K.iter().chain(CL100K) {
            assert!(p.len() <= HEAD, "{p}");
            assert_eq!(*p, p.to_ascii_lowercase(), "{p}");
        }
    }

    #[test]
    fn families_are_told_by_prefix_in_any_case() {
        let o200k = Some(tiktoken_rs::o200k_base_singleton());
        let cl100k = Some(tiktoken_rs::cl100k_base_singleton());
        let is = |model: &str, want: Option<&'static CoreBPE>| {
            let got = encoding_for(model);
            assert!(
                got.map(std::ptr::from_ref) == want.map(std::ptr::from_ref),
                "{model}"
            );
        };
        is("gpt-4o", o200k);
        is("GPT-4O-mini", o200k);
        is("azure/O3-pro", o200k);
        is("gpt-4-turbo", cl100k);
        is("Text-Embedding-ADA-002", cl100k);
        is("gpt-3", None);
        is("claude-sonnet", None);
        is("", None);
        is("x/", None);
        // A name longer than the lower-cased start still matches by it.
        is(&format!("gpt-5{}", "x".repeat(100)), o200k);
    }

    #[test]
    fn stream_usage_comes_from_the_upstream_or_is_counted() {
        let f = TokenCountFactory::new(&TokenCountConfig {
            on_disconnect: crate::config::OnDisconnect::Drain,
            chars_per_token: 4.0,
        });
        let mut cx = FilterCx {
            upstream_model: "gpt-4o".into(),
            ..FilterCx::default()
        };
        let mut t = f.instance();
        let mut evs = vec![StreamEvent::Text {
            index: 0,
            text: "hello world".into(),
        }];
        t.on_events(&mut evs, &mut cx);
        t.on_end(&mut evs, &mut cx);
        assert_eq!(cx.usage.map(|u| u.completion_tokens), Some(2));
        let mut cx = FilterCx::default();
        let mut t = f.instance();
        let u = Usage {
            prompt_tokens: 5,
            completion_tokens: 9,
            ..Usage::default()
        };
        let mut evs = vec![StreamEvent::Usage(u)];
        t.on_events(&mut evs, &mut cx);
        t.on_end(&mut evs, &mut cx);
        assert_eq!(cx.usage, Some(u));
    }
}
