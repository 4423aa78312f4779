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
            "/openai/models?limit=2",
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
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("x-trace"), Some("t1"));
    assert_eq!(seen.header("host").unwrap(), m.addr.to_string());
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
    let r = post(gw.addr, "/openai/files", &[], &vec![b'a'; 4096]).await;
    assert_eq!(r.status, 413);
    error_json(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_with_flat_memory() {
    const SIZE: usize = 50 << 20;
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(&config(&m.base_url(), "", ""), KEY).await;
    // Warm up so the baseline includes the pools and buffers of a served request.
    let r = get(gw.addr, "/openai/models").await.unwrap();
    assert_eq!(r.status, 200);
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
