//! Pieces every wire format shares: the reply type, the per-request context,
//! output generation (length limits, stop sequences) and embedding vectors.

use serde_json::Value;

use super::controls::Controls;
use super::text;
use super::MockState;

pub enum Reply {
    Json {
        status: u16,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    /// Complete SSE events; `first_content` is the index of the first token
    /// event, so stream faults can land after N tokens.
    Stream {
        events: Vec<Vec<u8>>,
        first_content: usize,
    },
}

pub struct Ctx<'a> {
    pub state: &'a MockState,
    pub controls: &'a Controls,
    pub id: u64,
    pub created: u64,
}

pub fn json_reply(status: u16, v: &Value) -> Reply {
    Reply::Json {
        status,
        body: v.to_string().into_bytes(),
        headers: Vec::new(),
    }
}

pub fn json_ok(v: Value) -> Reply {
    json_reply(200, &v)
}

/// Why generation ended, in format-neutral terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    End,
    MaxTokens,
    Sequence(String),
}

pub struct Generated {
    pub tokens: Vec<String>,
    pub stop: Stop,
}

/// How a `max_tokens` limit is judged. OpenAI's mock has always reported
/// `length` only when output was actually cut; Anthropic and Gemini report the
/// limit as soon as the count reaches it (no room left for an end-of-turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Exceeded,
    Reached,
}

/// Tokens of the answer: `fixed` text wins (tool results), then echo, then
/// the generated filler. Stop sequences cut first, then `max` applies.
pub fn generate(
    c: &Controls,
    echo: Option<&str>,
    fixed: Option<&str>,
    max: Option<u64>,
    limit: Limit,
    stops: &[String],
) -> Generated {
    let tokens = match (fixed, echo) {
        (Some(t), _) => text::split_tokens(t),
        (None, Some(t)) if c.echo => text::split_tokens(t),
        _ => text::generated(c.tokens),
    };
    let (mut tokens, mut stop) = cut_at_stop(tokens, stops);
    if let Some(max) = max {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let over = match limit {
            Limit::Exceeded => tokens.len() > max,
            Limit::Reached => tokens.len() >= max,
        };
        if over {
            tokens.truncate(max);
            stop = Stop::MaxTokens;
        }
    }
    Generated { tokens, stop }
}

/// Ends the output just before the earliest stop sequence, as providers do
/// (the sequence itself is not returned).
fn cut_at_stop(tokens: Vec<String>, stops: &[String]) -> (Vec<String>, Stop) {
    let full = tokens.concat();
    let hit = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| full.find(s.as_str()).map(|at| (at, s)))
        .min_by_key(|(at, _)| *at);
    let Some((at, seq)) = hit else {
        return (tokens, Stop::End);
    };
    let mut out = Vec::new();
    let mut used = 0;
    for t in tokens {
        if used + t.len() <= at {
            used += t.len();
            out.push(t);
            continue;
        }
        let rest = &t[..at - used];
        if !rest.is_empty() {
            out.push(rest.to_string());
        }
        break;
    }
    (out, Stop::Sequence(seq.clone()))
}

/// A deterministic unit-length vector derived from the input text.
pub fn vector(s: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let raw: Vec<f32> = (0..dims)
        .map(|i| {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1 + i as u64);
            ((h >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

/// Text of a string, or the `text` fields of an array of parts/blocks.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MockOptions;

    fn controls() -> Controls {
        Controls::from_headers(&MockOptions::default(), &[])
    }

    #[test]
    fn stop_sequence_cuts_mid_token() {
        let g = generate(
            &controls(),
            None,
            Some("alpha beta gamma"),
            None,
            Limit::Reached,
            &["ta g".to_string(), "gamma".to_string()],
        );
        assert_eq!(g.tokens.concat(), "alpha be");
        assert_eq!(g.stop, Stop::Sequence("ta g".into()));
    }

    #[test]
    fn limit_rules_differ_only_at_the_boundary() {
        let c = controls();
        let three = |limit| generate(&c, None, Some("a b c"), Some(3), limit, &[]).stop;
        assert_eq!(three(Limit::Exceeded), Stop::End);
        assert_eq!(three(Limit::Reached), Stop::MaxTokens);
        let g = generate(&c, None, Some("a b c"), Some(2), Limit::Exceeded, &[]);
        assert_eq!((g.tokens.len(), g.stop), (2, Stop::MaxTokens));
    }
}
