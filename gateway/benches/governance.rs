//! Governance overhead per request: the rate limiter (our GCRA against
//! pingora-limits' `Rate` estimator), key lookup, a full admission with
//! settlement, and the usage log's two writes.
//! `cargo bench -p sluice-gateway --bench governance`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sluice_gateway::config::schema::{Fsync, RawConfig, UsageLogSection};
use sluice_gateway::config::units::Size;
use sluice_gateway::govern::limits::{now_nanos, Gcra};
use sluice_gateway::govern::usage::{Entry, UsageLog};
use sluice_gateway::govern::Governance;

/// Runs a future that never waits (the memory store's admission).
fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("admission waited"),
    }
}

fn limiter(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate limiter");
    let gcra = Gcra::default();
    // 1e9 per second: never refuses, so every call does the full update.
    g.bench_function("GCRA admit", |b| {
        b.iter(|| gcra.admit(black_box(now_nanos()), 1, 1_000_000))
    });
    let rate = pingora_limits::rate::Rate::new(Duration::from_secs(1));
    g.bench_function("pingora-limits Rate observe", |b| {
        b.iter(|| rate.observe(black_box(&"key-id"), 1))
    });
    g.bench_function("pingora-limits Rate observe + rate", |b| {
        b.iter(|| {
            rate.observe(black_box(&"key-id"), 1);
            rate.rate(black_box(&"key-id"))
        })
    });
    g.finish();
}

const CONFIG: &str = "
auth: keys
prices: { m: { input: 1, output: 2 } }
tenants:
  t: { limits: { rpm: 1000000000, tpm: 1000000000000 }, budget: { usd: 1000000000, period: monthly } }
keys:
  - { id: k, tenant: t, key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08,
      limits: { rpm: 1000000000, tpm: 1000000000000, concurrency: 100000 } }
";

fn admission(c: &mut Criterion) {
    let raw: RawConfig = serde_yaml::from_str(CONFIG).unwrap();
    let gov = Governance::compile(&raw, &prometheus::Registry::new())
        .map_err(|p| format!("{p:?}"))
        .unwrap();
    let mut g = c.benchmark_group("governance");
    g.bench_function("key lookup (SHA-256 + table)", |b| {
        b.iter(|| gov.key_caller(black_box("test")).unwrap())
    });
    let caller = gov.key_caller("test").unwrap();
    let usage = sluice_providers::Usage {
        prompt_tokens: 300,
        completion_tokens: 100,
        ..Default::default()
    };
    g.bench_function(
        "admit + settle (key and tenant: rpm, tpm, concurrency, budget)",
        |b| {
            b.iter(|| {
                let mut t = ready(gov.admit(Some(&caller), "m", "m", 340, Some(256))).unwrap();
                gov.settle(Some(&caller), &mut t, Some(&usage), None)
            })
        },
    );
    let dir = std::env::temp_dir().join(format!("sluice-bench-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (log, _) = UsageLog::open(&UsageLogSection {
        path: dir.join("usage.jsonl").display().to_string(),
        fsync: Fsync::Never,
        rotate_size: Size(64 << 20),
    })
    .unwrap();
    let mut n = 0u64;
    let mut id = String::new();
    g.bench_function("usage log: write-ahead + record", |b| {
        b.iter(|| {
            n += 1;
            id.clear();
            id.push_str("req_");
            id.push_str(itoa::Buffer::new().format(n));
            let rec = Entry {
                request_id: &id,
                tenant: Some("t"),
                key_id: Some("k"),
                model: Some("m"),
                provider: Some("p"),
                target: Some("p/m"),
                status: 200,
                ..Entry::default()
            };
            let g = log.begin(&rec).unwrap();
            log.end(&rec, Some(g)).unwrap();
            // The worst case: each answer writes its own note.
            log.commit().unwrap();
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn headers(c: &mut Criterion) {
    use pingora::http::ResponseHeader;
    let mut g = c.benchmark_group("response head");
    for (name, case) in [("with case map", true), ("no case map", false)] {
        g.bench_function(format!("7 governance headers, {name}"), |b| {
            b.iter(|| {
                let mut h = if case {
                    ResponseHeader::build(200, Some(16)).unwrap()
                } else {
                    ResponseHeader::build_no_case(200, Some(16)).unwrap()
                };
                h.insert_header("x-sluice-request-id", "req_0123456789abcdef12")
                    .unwrap();
                for n in [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                ] {
                    h.insert_header(n, http::HeaderValue::from(black_box(123_456u64)))
                        .unwrap();
                }
                h.insert_header("x-ratelimit-reset-requests", "12s")
                    .unwrap();
                h.insert_header("x-ratelimit-reset-tokens", "12s").unwrap();
                h
            })
        });
    }
    g.finish();
}

criterion_group!(benches, limiter, admission, headers);
criterion_main!(benches);
