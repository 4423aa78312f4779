//! Kept-alive client connections: Sluice waits for a connection's next
//! request on the bare stream (see `conn.rs`), so the request may arrive in
//! pieces, late, or never; shutdown closes the idle ones at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use sluice_perf::client::{build_request, ClientError, Conn};
use sluice_perf::mock::MockOptions;

/// A chat request for the demo model.
fn chat(content: &str, stream: bool, headers: &[(&str, &str)]) -> Vec<u8> {
    build_request(
        "POST",
        "/v1/chat/completions",
        "x",
        headers,
        &chat_body("demo", content, stream),
    )
}

/// The next answer, failing (not hanging) when it does not come.
async fn answer(c: &mut Conn) -> sluice_perf::client::Response {
    tokio::time::timeout(Duration::from_secs(10), c.receive())
        .await
        .expect("no answer within 10 s")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_late_and_in_pieces_are_served_on_one_connection() {
    let mock = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let req = chat("pieces", false, &[]);
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let first = c.send(&req).await.unwrap();
    assert_eq!(first.status, 200);
    // One byte, then the head's end, then the body: each after a pause, so
    // the gateway sees the request start before the rest exists.
    let head_end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for piece in [&req[..1], &req[1..head_end], &req[head_end..]] {
            c.write(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let r = answer(&mut c).await;
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(
            r.json().unwrap()["choices"],
            first.json().unwrap()["choices"]
        );
        assert!(r.keep_alive);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let mock = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let req = |content: &str| chat(content, false, &[]);
    let mut c = Conn::connect(gw.addr).await.unwrap();
    // Three requests in one write: the second and third are read with the
    // first, and must not wait for bytes that already came.
    let mut all = req("one");
    all.extend(req("two, longer"));
    all.extend(req("three, longest of all"));
    c.write(&all).await.unwrap();
    let mut prompts = Vec::new();
    for _ in 0..3 {
        let r = answer(&mut c).await;
        assert_eq!(r.status, 200);
        prompts.push(r.json().unwrap()["usage"]["prompt_tokens"].clone());
    }
    // The mock counts prompt tokens from the prompt: in order, all three.
    assert!(prompts[0].as_u64() < prompts[1].as_u64(), "{prompts:?}");
    assert!(prompts[1].as_u64() < prompts[2].as_u64(), "{prompts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_kept_connections_at_once() {
    let mock = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let req = chat("idle", false, &[]);
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut c = Conn::connect(gw.addr).await.unwrap();
        assert_eq!(c.send(&req).await.unwrap().status, 200);
        idle.push(c);
    }
    // A stream of about 2 s keeps the process up while the idle ones close.
    let addr = gw.addr;
    let busy = tokio::spawn(async move {
        let mut c = Conn::connect(addr).await.unwrap();
        let req = chat(
            "busy",
            true,
            &[("x-mock-itl-ms", "100"), ("x-mock-tokens", "20")],
        );
        c.send(&req).await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    let signalled = std::time::Instant::now();
    // The kept-alive timeout is 60 s: these close at once instead.
    for mut c in idle {
        let closed = tokio::time::timeout(Duration::from_secs(5), c.receive())
            .await
            .expect("an idle connection outlived the shutdown");
        assert!(
            matches!(closed, Err(ClientError::Closed | ClientError::Io(_))),
            "{closed:?}"
        );
    }
    assert!(
        !busy.is_finished(),
        "the idle connections closed only when the process left ({:?})",
        signalled.elapsed()
    );
    let r = busy.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_tells_its_gateway_from_another_server_on_a_port() {
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&m, ""), &[]).await;
    let pid = gw.child.id();
    assert!(listens(pid, gw.addr.port()) && listens(pid, gw.admin.port()));
    assert!(!listens(pid, m.addr.port()));
}
