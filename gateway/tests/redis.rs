//! `store: redis` with two gateways on one real `redis-server` (started on
//! an ephemeral port): shared limits, key changes seen by the other
//! instance, and both fail modes through an outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sluice_perf::client::{build_request, Conn, Response};
use sluice_perf::mock::MockOptions;

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/setup.sh installs it)");
        let r = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.client().get_connection().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    fn cmd<T: redis::FromRedisValue>(&self, c: &mut redis::Cmd) -> T {
        c.query(&mut self.client().get_connection().unwrap())
            .unwrap()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

const ADMIN: &str = "admin-token-0123";
const KEY: &str = "sk-shared-0123456789";

fn config(redis: &Redis, mock: &sluice_perf::mock::MockServer, fail: &str, limits: &str) -> String {
    format!(
        "auth: {{ mode: keys, admin_token: \"${{ADMIN}}\" }}
tenants: {{ t: {{}} }}
keys:
  - {{ id: k, tenant: t, key: \"${{K}}\", limits: {limits} }}
  - {{ id: k2, tenant: t, key: \"${{K2}}\", limits: {{ tpm: 2000 }} }}
store: {{ kind: redis, url: \"{}\", fail: {fail}, usage_stream: true }}
usage_log: {{ path: {}/usage-{}.jsonl, fsync: never }}
{}",
        redis.url(),
        std::env::temp_dir().display(),
        uniq(),
        demo_config(mock, "")
    )
}

fn uniq() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

const KEY2: &str = "sk-tokens-0123456789";
const ENV: &[(&str, &str)] = &[("ADMIN", ADMIN), ("K", KEY), ("K2", KEY2)];

async fn chat(gw: &Gateway, key: &str) -> Response {
    chat_at(gw.addr, key).await
}

/// A small chat request with `key` to the gateway at `addr`.
async fn chat_at(addr: std::net::SocketAddr, key: &str) -> Response {
    let h = format!("Bearer {key}");
    let body = serde_json::json!({"model": "demo", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]});
    let mut c = Conn::connect(addr).await.unwrap();
    c.send(&build_request(
        "POST",
        "/v1/chat/completions",
        "x",
        &[("authorization", &h), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    ))
    .await
    .unwrap()
}

/// Waits out the end of a minute, so a burst stays in one rate window.
async fn early_in_a_minute() {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if s > 45 {
        tokio::time::sleep(Duration::from_secs(61 - s)).await;
    }
}

/// Sends `n` requests with `key` at once, alternating between `a` and `b`;
/// answers the number admitted and the tokens they used.
async fn burst(a: &Gateway, b: &Gateway, key: &'static str, n: usize) -> (usize, u64) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        tasks.push(tokio::spawn(async move { chat_at(addr, key).await }));
    }
    let (mut ok, mut tokens) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            ok += 1;
            tokens += r.json().unwrap()["usage"]["total_tokens"].as_u64().unwrap();
        } else {
            assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
        }
    }
    (ok, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_request_and_token_limits() {
    let redis = Redis::start();
    let m = mock(MockOptions::default()).await;
    let yaml = config(&redis, &m, "open", "{ rpm: 100 }");
    let (a, b) = (
        Gateway::start(&yaml, ENV).await,
        Gateway::start(&yaml, ENV).await,
    );
    early_in_a_minute().await;
    // Never more than the limit across both; at most (instances - 1) x
    // lease (2% of 100 = 2) stranded on the other instance.
    let (ok, _) = burst(&a, &b, KEY, 300).await;
    assert!((98..=100).contains(&ok), "{ok} admitted of rpm 100");
    // Tokens: reservations are leased, so what was used stays under the limit.
    let (ok, tokens) = burst(&a, &b, KEY2, 300).await;
    assert!(
        ok > 0 && tokens <= 2000,
        "{ok} admitted, {tokens} tokens of tpm 2000"
    );
    // The usage stream got a copy of each record.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n: u64 = redis.cmd(redis::cmd("XLEN").arg("sluice:usage"));
        if n == 600 || Instant::now() > deadline {
            assert_eq!(n, 600, "one stream entry per request");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: serde_json::Value) -> Response {
    let h = format!("Bearer {ADMIN}");
    let mut c = Conn::connect(gw.admin).await.unwrap();
    c.send(&build_request(
        method,
        path,
        "x",
        &[("authorization", &h), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    ))
    .await
    .unwrap()
}

/// How long until `gw` answers `want` for `key` (at most 5 s).
async fn until(gw: &Gateway, key: &str, want: u16) -> Duration {
    let t = Instant::now();
    loop {
        let s = chat(gw, key).await.status;
        if s == want || t.elapsed() > Duration::from_secs(5) {
            assert_eq!(s, want, "after {:?}", t.elapsed());
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_reach_the_other_instance_within_two_seconds() {
    let redis = Redis::start();
    let m = mock(MockOptions::default()).await;
    let yaml = config(&redis, &m, "open", "{}");
    let (a, b) = (
        Gateway::start(&yaml, ENV).await,
        Gateway::start(&yaml, ENV).await,
    );
    let r = admin(
        &a,
        "POST",
        "/admin/keys",
        serde_json::json!({"tenant": "t", "id": "new"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let key = r.json().unwrap()["key"].as_str().unwrap().to_string();
    assert!(until(&b, &key, 200).await < Duration::from_secs(2));
    assert_eq!(
        admin(&a, "POST", "/admin/keys/new/disable", serde_json::json!({}))
            .await
            .status,
        200
    );
    assert!(until(&b, &key, 401).await < Duration::from_secs(2));
    assert_eq!(
        admin(&b, "POST", "/admin/keys/new/enable", serde_json::json!({}))
            .await
            .status,
        200
    );
    let r = admin(&b, "POST", "/admin/keys/new/rotate", serde_json::json!({})).await;
    let rotated = r.json().unwrap()["key"].as_str().unwrap().to_string();
    assert!(until(&a, &rotated, 200).await < Duration::from_secs(2));
    assert_eq!(chat(&a, &key).await.status, 401);
    // A config key disabled on one instance is refused by the other.
    assert_eq!(
        admin(&b, "POST", "/admin/keys/k/disable", serde_json::json!({}))
            .await
            .status,
        200
    );
    assert!(until(&a, KEY, 401).await < Duration::from_secs(2));
    // A third instance started later loads the changes before serving.
    let c = Gateway::start(&yaml, ENV).await;
    assert_eq!(chat(&c, &rotated).await.status, 200);
    assert_eq!(chat(&c, KEY).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_follows_the_fail_mode_and_counts_reconcile() {
    let mut redis = Redis::start();
    let m = mock(MockOptions::default()).await;
    let open = Gateway::start(&config(&redis, &m, "open", "{ rpm: 1000 }"), ENV).await;
    let closed = Gateway::start(&config(&redis, &m, "closed", "{ rpm: 1000 }"), ENV).await;
    early_in_a_minute().await;
    assert_eq!(chat(&open, KEY).await.status, 200);
    assert_eq!(chat(&closed, KEY).await.status, 200);
    redis.stop();
    // Both notice within a health check (0.5 s)...
    for gw in [&open, &closed] {
        let m = gw.metrics_when("sluice_store_up 0", 0.0).await;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut m = m;
        while sample(&m, "sluice_store_up") != 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            m = gw.metrics().await;
        }
        assert_eq!(sample(&m, "sluice_store_up"), 0.0);
    }
    // ...and neither hangs: open serves on local limits, closed refuses.
    let mut open_ok = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let r = chat(&open, KEY).await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        open_ok += 1;
        let t = Instant::now();
        let r = chat(&closed, KEY).await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(error_json(&r)["error"]["code"], "store_unavailable");
    }
    let ready = get(closed.admin, "/readyz").await.unwrap();
    assert_eq!(ready.status, 503);
    // Back on the same port, empty: both recover, and what the open
    // instance counted during the outage reaches the store.
    let redis = Redis::start_on(redis.port);
    assert!(until(&closed, KEY, 200).await < Duration::from_secs(5));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Window numbers keep 24 bits.
    let minute = (secs / 60) & ((1 << 24) - 1);
    let key = format!("sluice:w:k:k:rpm:{minute}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n: Option<u64> = redis.cmd(redis::cmd("GET").arg(&key));
        if n.unwrap_or(0) >= open_ok || Instant::now() > deadline {
            assert!(
                n.unwrap_or(0) >= open_ok,
                "{n:?} < {open_ok} counted during the outage"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(closed.admin, "/readyz").await.unwrap().status, 200);
}
