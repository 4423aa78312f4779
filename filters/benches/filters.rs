//! Each filter's request-side cost per KB of prompt.
//! `cargo bench -p sluice-filters --bench filters`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_filters::config::*;
use sluice_filters::{Chain, FiltersConfig};
use sluice_providers::{ChatRequest, Format, Message, Role};

/// A prompt of about `size` bytes of ordinary prose (a number, an accented
/// word) with a little PII in it.
fn request(size: usize) -> ChatRequest {
    let para = "Gateways sit between applications and model providers; they authenticate callers, \
                apply policy and route each request. Contact ops at ops@example.com if a route fails, café 2 ";
    let mut text = String::new();
    while text.len() < size {
        text.push_str(para);
    }
    text.truncate(size);
    let mut r = ChatRequest::new(Format::OpenAi, "gpt-4o");
    r.messages
        .push(Message::text(Role::System, "You are concise."));
    r.messages.push(Message::text(Role::User, text));
    r
}

fn configs() -> Vec<(&'static str, FiltersConfig)> {
    let pii = PiiConfig {
        action: PiiAction::Reversible,
        detectors: Detector::ALL.to_vec(),
        custom: Vec::new(),
        deny_list: Vec::new(),
        responses: false,
        hash_key: None,
    };
    let guard = GuardrailsConfig {
        prompt_injection: GuardAction::Block,
        threshold: 3,
        max_messages: Some(500),
        max_message_chars: Some(200_000),
        max_tools: None,
    };
    let tokens = TokenCountConfig {
        on_disconnect: OnDisconnect::Drain,
        chars_per_token: 4.0,
    };
    vec![
        (
            "token_count",
            FiltersConfig {
                token_count: Some(tokens.clone()),
                ..Default::default()
            },
        ),
        (
            "pii",
            FiltersConfig {
                pii: Some(pii.clone()),
                ..Default::default()
            },
        ),
        (
            "guardrails",
            FiltersConfig {
                guardrails: Some(guard.clone()),
                ..Default::default()
            },
        ),
        (
            "all",
            FiltersConfig {
                token_count: Some(tokens),
                pii: Some(pii),
                guardrails: Some(guard),
            },
        ),
    ]
}

fn per_kb(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter_request");
    for kb in [1usize, 10, 100] {
        let req = request(kb << 10);
        g.throughput(Throughput::Bytes((kb << 10) as u64));
        for (name, cfg) in configs() {
            let chain = Chain::compile(&cfg).unwrap();
            g.bench_with_input(BenchmarkId::new(name, format!("{kb}KB")), &req, |b, req| {
                b.iter(|| {
                    let mut r = req.clone();
                    let mut run = chain.start("gpt-4o");
                    let _ = run.request(black_box(&mut r));
                    r
                })
            });
        }
    }
    g.finish();
}

/// The tokenizer itself, without the count cache (a prompt never seen before).
fn tokenizer_uncached(c: &mut Criterion) {
    let mut g = c.benchmark_group("tiktoken_uncached");
    let counter = sluice_filters::tokens::Counter::new("gpt-4o", 4.0);
    for kb in [1usize, 10] {
        let req = request(kb << 10);
        let text = req.messages[1].joined_text();
        g.throughput(Throughput::Bytes((kb << 10) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{kb}KB")),
            &text,
            |b, t| b.iter(|| counter.count_uncached(black_box(t))),
        );
    }
    g.finish();
}

criterion_group!(benches, per_kb, tokenizer_uncached);
criterion_main!(benches);
