//! Selection overhead per request: each balancer picking among 2 and 8
//! healthy targets (pick + in-flight claim), and content rules evaluated
//! over a 1 KB prompt. `cargo bench -p sluice-gateway --bench routing`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use http::HeaderMap;
use sluice_gateway::config::schema::{RouteSection, WhenSection};
use sluice_gateway::routing::balance::{Balancer, Policy};
use sluice_gateway::routing::health::{now_ms, BreakerConfig, Health};
use sluice_gateway::routing::rules::{RouteInput, Routes};
use sluice_providers::{ChatRequest, Format, Message, Role};

fn select(c: &mut Criterion) {
    let mut g = c.benchmark_group("select");
    for n in [2usize, 8] {
        let health: Vec<Arc<Health>> = (0..n)
            .map(|_| Arc::new(Health::new(BreakerConfig::default())))
            .collect();
        let weights: Vec<u32> = (1..=n as u32).collect();
        for policy in [
            Policy::RoundRobin,
            Policy::Weighted,
            Policy::LeastConnections,
            Policy::Latency,
            Policy::Random,
        ] {
            let b = Balancer::new(policy, &weights);
            g.bench_with_input(BenchmarkId::new(policy.as_str(), n), &n, |bench, _| {
                bench.iter(|| {
                    let now = now_ms();
                    let i = b
                        .pick(|i| &*health[i], now, |i| health[i].eligible(now))
                        .unwrap();
                    let guard = health[i].acquire(now).unwrap();
                    black_box(guard);
                })
            });
        }
    }
    g.finish();
}

fn rules(c: &mut Criterion) {
    let when = |f: fn(&mut WhenSection)| {
        let mut w = WhenSection::default();
        f(&mut w);
        RouteSection {
            when: w,
            to: Some("b".into()),
            split: None,
        }
    };
    let sections = vec![
        when(|w| w.prompt_regex = Some(r"(?i)\b(rust|golang|python) code\b".into())),
        when(|w| w.prompt_keywords = vec!["kubernetes".into(), "terraform".into()]),
        when(|w| {
            w.header.insert("x-tier".into(), "free".into());
        }),
        when(|w| w.min_prompt_tokens = Some(30_000)),
        when(|w| w.has_images = Some(true)),
    ];
    let (routes, problems) = Routes::compile(&sections, &["a", "b"]);
    assert!(problems.is_empty());
    let mut req = ChatRequest::new(Format::OpenAi, "a");
    req.messages
        .push(Message::text(Role::System, "You are a helpful assistant."));
    let text =
        "Gateways sit between applications and model providers; they route, retry and account. "
            .repeat(12);
    req.messages.push(Message::text(Role::User, &text[..1024]));
    let headers = HeaderMap::new();
    let count = |r: &ChatRequest| r.texts().map(|t| t.len() as u64 / 4).sum::<u64>();
    c.bench_function("rules/5 rules, none match, 1 KB prompt", |b| {
        b.iter(|| {
            routes.evaluate(&RouteInput {
                model: "a",
                headers: &headers,
                request: Some(black_box(&req)),
                count_tokens: &count,
                caller: None,
            })
        })
    });
}

criterion_group!(benches, select, rules);
criterion_main!(benches);
