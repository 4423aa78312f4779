//! Raw passthrough routes: prefix mapping, credential swap, provider
//! failover, body limits, and large bodies streamed with flat memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sluice_perf::client::{build_request, Conn};
use sluice_perf::mock::MockOptions;

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const KEY: &[(&str, &str)] = &[("PT_KEY", "sk-provider")];

fn config(mock_url: &str, extra_targets: &str, extra: &str) -> String {
    format!(
        "providers:\n  up:\n    kind: openai_compatible\n    base_url: {mock_url}\n    api_key: ${{PT_KEY}}\n  dead:\n    kind: openai_compatible\n    base_url: http://127.0.0.1:9/v1\nmodels:\n  demo:\n    targets: [ {{ provider: up }} ]\npassthrough:\n  - prefix: /openai/\n    targets: [ {{ provider: up }}{extra_targets} ]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maps_the_path_and_swaps_credentials() {
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(&config(&m.base_url(), "", ""), KEY).await;
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let r = c
        .send(&build_request(
            "GET",
            "/openai/models?limit=2&key=client",
            "localhost",
            &[
                ("authorization", "Bearer client-key"),
                ("cookie", "a=b"),
                ("x-trace", "t1"),
            ],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-sluice-target"), Some("up"));
    assert!(r.json().unwrap()["data"].is_array());
    let seen = m.state.recorded().pop().unwrap();
    assert_eq!(seen.path, "/v1/models?limit=2");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-provider"));
    for h in ["cookie", "x-api-key", "api-key", "x-goog-api-key"] {
        assert_eq!(seen.header(h), None, "{h} forwarded");
    }
    assert_eq!(seen.header("x-trace"), Some("t1"));
    assert_eq!(seen.header("host").unwrap(), m.addr.to_string());
    let r = get(gw.addr, "/openai/a/%2e%2e/%2e%2e/secret")
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    error_json(&r);
    // The LLM API is untouched by the prefix route.
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[],
        &chat_body("demo", "hi", false),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_provider_is_skipped_and_limits_answer_in_json() {
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(
        &config(
            &m.base_url(),
            ", { provider: dead }",
            "    max_body: 1KiB\n",
        ),
        KEY,
    )
    .await;
    for _ in 0..6 {
        let r = get(gw.addr, "/openai/models").await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-sluice-target"), Some("up"));
    }
    // Oversized uploads are the client's fault: the provider stays in rotation.
    for _ in 0..8 {
        let r = post(gw.addr, "/openai/files", &[], &vec![b'a'; 4096]).await;
        assert_eq!(r.status, 413);
        error_json(&r);
    }
    let r = get(gw.addr, "/openai/models").await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_provider_times_out_with_a_json_error() {
    let m = mock(MockOptions::default()).await;
    let cfg = config(&m.base_url(), "", "").replace(
        "    api_key: ${PT_KEY}\n",
        "    api_key: ${PT_KEY}\n    forward_headers: [\"x-mock-*\"]\n    timeouts: { first_byte: 300ms, idle: 300ms }\n",
    );
    let gw = Gateway::start(&cfg, KEY).await;
    let t0 = std::time::Instant::now();
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let r = c
        .send(&build_request(
            "GET",
            "/openai/models",
            "localhost",
            &[("x-mock-fault", "stall")],
            b"",
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    error_json(&r);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_with_flat_memory() {
    const SIZE: usize = 50 << 20;
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(&config(&m.base_url(), "", ""), KEY).await;
    // Warm up so the baseline includes the pools and buffers of a served request.
    let r = get(gw.addr, "/openai/models").await.unwrap();
    assert_eq!(r.status, 200);
    // The peak is measured from here on.
    std::fs::write(format!("/proc/{}/clear_refs", gw.child.id()), "5").unwrap();
    let (base, _) = memory_kib(gw.child.id());
    let upload = vec![b'u'; SIZE];
    let r = post(
        gw.addr,
        "/openai/files",
        &[("content-type", "application/octet-stream")],
        &upload,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["bytes"], SIZE);
    drop(upload);
    let path = format!("/openai/files/blob/content?size={SIZE}");
    let r = get(gw.addr, &path).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), SIZE);
    let (_, peak) = memory_kib(gw.child.id());
    let growth_mib = peak.saturating_sub(base) as f64 / 1024.0;
    eprintln!(
        "gateway RSS {base} KiB before, peak {peak} KiB: +{growth_mib:.1} MiB for 50 MiB each way"
    );
    assert!(growth_mib < 16.0, "RSS grew {growth_mib:.1} MiB");
}
