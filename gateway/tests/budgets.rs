//! Budgets and usage records under concurrency: the reservation bound holds
//! for plain, streamed and abandoned requests; alerts fire once per
//! threshold; a killed gateway loses no record of a completed response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sluice_perf::mock::{MockOptions, MockServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "sk-budget-0123456789";
/// Output price: 1000 USD per million tokens = 0.001 USD a token.
const OUTPUT_PRICE: f64 = 1000.0;
const MAX_TOKENS: u64 = 16;
/// What one request may cost at most, in USD.
const PER_REQUEST: f64 = MAX_TOKENS as f64 * OUTPUT_PRICE / 1e6;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(mock: &MockServer, budget: &str, log: &Path) -> String {
    format!(
        "auth: keys
prices:
  demo: {{ input: 0, output: {OUTPUT_PRICE} }}
tenants:
  t: {{}}
keys:
  - id: k
    tenant: t
    key: \"${{K}}\"
    budget: {budget}
usage_log: {{ path: {}, fsync: never }}
{}",
        log.display(),
        demo_config(mock, "")
    )
}

fn body(stream: bool) -> Vec<u8> {
    serde_json::json!({"model": "demo", "stream": stream, "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
    .into_bytes()
}

/// The complete lines of the log: a batch being appended may be read
/// half-written, and its last line is then left for the next read.
fn records(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn spent(gw: &Gateway) -> f64 {
    let mut c = sluice_perf::client::Conn::connect(gw.addr).await.unwrap();
    let auth = format!("Bearer {KEY}");
    let r = c
        .send(&sluice_perf::client::build_request(
            "GET",
            "/v1/key/info",
            "localhost",
            &[("authorization", &auth)],
            b"",
        ))
        .await
        .unwrap();
    let v = r.json().unwrap();
    v["key"]["budget"]["spent_usd"].as_f64().unwrap()
}

/// Sends a request and drops the connection once the stream has begun.
async fn abandon(addr: std::net::SocketAddr) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let b = body(true);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer {KEY}\r\nx-mock-itl-ms: 5\r\ncontent-length: {}\r\n\r\n",
        b.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&b).await.unwrap();
    let mut buf = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Whole,
    Stream,
    Abandon,
}

async fn budget_bound(mode: Mode) {
    let m = mock(MockOptions::default()).await;
    let dir = tmpdir(&format!("budget-{mode:?}"));
    let log = dir.join("usage.jsonl");
    // Fifty requests' worth.
    let budget = format!(
        "{{ usd: {}, period: total, hard: true }}",
        50.0 * PER_REQUEST
    );
    let gw = Gateway::start(&config(&m, &budget, &log), &[("K", KEY)]).await;
    let auth = format!("Bearer {KEY}");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (addr, auth) = (gw.addr, auth.clone());
        tasks.push(tokio::spawn(async move {
            match mode {
                Mode::Abandon => {
                    abandon(addr).await;
                    0
                }
                _ => {
                    post(
                        addr,
                        "/v1/chat/completions",
                        &[("authorization", &auth), ("x-mock-itl-ms", "1")],
                        &body(matches!(mode, Mode::Stream)),
                    )
                    .await
                    .status
                }
            }
        }));
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_default() += 1;
    }
    // Wait for abandoned requests to be drained and settled.
    let mut rec = Vec::new();
    for _ in 0..100 {
        rec = records(&log);
        if rec.len() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rec.len(), 200, "one record per request: {statuses:?}");
    let cost: f64 = rec.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
    let served = rec
        .iter()
        .filter(|r| r["completion_tokens"].as_u64() > Some(0))
        .count();
    // The bound: every reservation covers its cost, so spend never passes
    // the budget; and the mock uses all of max_tokens, so exactly fifty fit.
    let budget_usd = 50.0 * PER_REQUEST;
    assert!(
        cost <= budget_usd + 1e-9,
        "{mode:?}: spent {cost} > {budget_usd}"
    );
    let shape: Vec<String> = rec
        .iter()
        .map(|r| {
            format!(
                "{}:{}:{}",
                r["status"], r["completion_tokens"], r["cost_usd"]
            )
        })
        .collect();
    assert_eq!(served, 50, "{mode:?}: {statuses:?} {shape:?}");
    assert!((spent(&gw).await - cost).abs() < 1e-9);
    if !matches!(mode, Mode::Abandon) {
        assert_eq!(statuses.get(&200), Some(&50), "{statuses:?}");
        assert_eq!(statuses.get(&402), Some(&150), "{statuses:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_never_pass_a_fifty_request_budget() {
    budget_bound(Mode::Whole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_bound_holds_for_streams() {
    budget_bound(Mode::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_bound_holds_when_clients_leave_mid_stream() {
    budget_bound(Mode::Abandon).await;
}

/// A webhook receiver: answers 500 to the very first POST (so a retry must
/// follow), 200 after; keeps (alert id, threshold) of each accepted one.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, f64)>>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Head and a JSON body (small): read until the body parses.
            let v: serde_json::Value = loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((_, b)) = text.split_once("\r\n\r\n") {
                    if let Ok(v) = serde_json::from_str(b) {
                        break v;
                    }
                }
                assert!(n > 0, "webhook request cut short");
            };
            let status = if first { "500 Oops" } else { "200 OK" };
            if !first {
                seen.lock().unwrap().push((
                    v["alert_id"].as_str().unwrap().to_string(),
                    v["threshold"].as_f64().unwrap(),
                ));
            }
            first = false;
            let _ = s
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_per_threshold_under_concurrency() {
    let m = mock(MockOptions::default()).await;
    let dir = tmpdir("alerts");
    let log = dir.join("usage.jsonl");
    let (url, got) = receiver().await;
    // A soft budget of ten requests, crossed many times over by a hundred.
    let budget = format!(
        "{{ usd: {}, period: daily, hard: false, alert_at: [0.5, 0.8, 1.0], webhook: \"{url}\" }}",
        10.0 * PER_REQUEST
    );
    let gw = Gateway::start(&config(&m, &budget, &log), &[("K", KEY)]).await;
    let auth = format!("Bearer {KEY}");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (addr, auth) = (gw.addr, auth.clone());
        tasks.push(tokio::spawn(async move {
            post(
                addr,
                "/v1/chat/completions",
                &[("authorization", &auth)],
                &body(false),
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "a soft budget refuses nothing");
    }
    for _ in 0..100 {
        if got.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate time to show up, if there were one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = got.lock().unwrap().clone();
    let mut thresholds: Vec<f64> = alerts.iter().map(|a| a.1).collect();
    thresholds.sort_by(f64::total_cmp);
    assert_eq!(thresholds, vec![0.5, 0.8, 1.0], "{alerts:?}");
    let ids: HashSet<&String> = alerts.iter().map(|a| &a.0).collect();
    assert_eq!(ids.len(), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_completed_record() {
    let m = mock(MockOptions::default()).await;
    let dir = tmpdir("kill9");
    let log = dir.join("usage.jsonl");
    let yaml = config(&m, "{ usd: 1000, period: monthly }", &log);
    let gw = Gateway::start(&yaml, &[("K", KEY)]).await;
    let auth = format!("Bearer {KEY}");
    let done: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (addr, auth, done) = (gw.addr, auth.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..1000 {
                let Ok(mut c) = sluice_perf::client::Conn::connect(addr).await else {
                    return;
                };
                let req = sluice_perf::client::build_request(
                    "POST",
                    "/v1/chat/completions",
                    "localhost",
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                        ("x-mock-ttft-ms", "2"),
                    ],
                    &body(false),
                );
                match c.send(&req).await {
                    Ok(r) if r.status == 200 => {
                        let id = r.header("x-sluice-request-id").unwrap().to_string();
                        done.lock().unwrap().push(id);
                    }
                    _ => return,
                }
            }
        }));
    }
    while done.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gw.signal("KILL");
    for t in tasks {
        let _ = t.await;
    }
    drop(gw);
    let completed = done.lock().unwrap().clone();
    // The restart replays what the write-ahead file holds.
    let gw = Gateway::start(&yaml, &[("K", KEY)]).await;
    let rec = records(&log);
    let mut seen = HashSet::new();
    for r in &rec {
        assert!(
            seen.insert(r["request_id"].as_str().unwrap().to_string()),
            "duplicate {r}"
        );
    }
    for id in &completed {
        assert!(seen.contains(id), "completed {id} has no record");
    }
    let cost: f64 = rec.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
    assert!(
        (spent(&gw).await - cost).abs() < 1e-6,
        "spend matches the records"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
