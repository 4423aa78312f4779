//! Gateway core against a real mock upstream: bodies of every size over h1
//! and h2c, streams, errors, disconnects and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use sluice_perf::client::{build_request, Conn};
use sluice_perf::mock::MockOptions;

/// A chat body of about `size` bytes whose model is `demo`.
fn sized_body(size: usize, stream: bool) -> Vec<u8> {
    let filler = "x".repeat(size.saturating_sub(120));
    chat_body("demo", &filler, stream)
}

fn expected_upstream(body: &[u8]) -> Vec<u8> {
    let s = std::str::from_utf8(body).unwrap();
    s.replacen("\"model\":\"demo\"", "\"model\":\"upstream-demo\"", 1)
        .into_bytes()
}

async fn h2c_post(addr: std::net::SocketAddr, body: Vec<u8>) -> (u16, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    // Respect flow control: send in window-sized pieces.
    let mut body = Bytes::from(body);
    while !body.is_empty() {
        send.reserve_capacity(body.len().min(1 << 20));
        let cap = std::future::poll_fn(|cx| send.poll_capacity(cx))
            .await
            .unwrap()
            .unwrap();
        let piece = body.split_to(cap.min(body.len()));
        send.send_data(piece, body.is_empty()).unwrap();
    }
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut recv = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        recv.flow_control().release_capacity(chunk.len()).unwrap();
        out.extend_from_slice(&chunk);
    }
    (status, Bytes::from(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_of_every_size_arrive_byte_exact_over_h1_and_h2c() {
    let mock = mock(MockOptions {
        tokens: 3,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let mut seen = 0;
    for size in [1 << 10, 63 << 10, 65 << 10, 1 << 20, 8 << 20] {
        for stream in [false, true] {
            for h2 in [false, true] {
                let body = sized_body(size, stream);
                let (status, resp) = if h2 {
                    h2c_post(gw.addr, body.clone()).await
                } else {
                    let r = post(gw.addr, "/v1/chat/completions", &[], &body).await;
                    (r.status, r.body)
                };
                assert_eq!(
                    status,
                    200,
                    "size {size} stream {stream} h2 {h2}: {:?}",
                    String::from_utf8_lossy(&resp)
                );
                if stream {
                    let data = sse_data(&resp);
                    assert_eq!(
                        data.last().map(String::as_str),
                        Some("[DONE]"),
                        "size {size} h2 {h2}"
                    );
                } else {
                    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
                    assert_eq!(v["object"], "chat.completion");
                }
                let rec = mock.state.recorded();
                assert_eq!(rec.len(), seen + 1);
                let got = &rec[seen];
                assert!(
                    got.body[..] == expected_upstream(&body)[..],
                    "size {size} stream {stream} h2 {h2}: body differs"
                );
                seen += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_events_arrive_unchanged_and_in_order() {
    let mock = mock(MockOptions {
        tokens: 5,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let body = br#"{"model":"demo","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let via_gw = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-mock-itl-ms", "5")],
        body,
    )
    .await;
    assert_eq!(via_gw.status, 200);
    assert_eq!(via_gw.header("content-type"), Some("text/event-stream"));
    let direct = post(
        mock.addr,
        "/v1/chat/completions",
        &[],
        &expected_upstream(body),
    )
    .await;
    let normalize = |b: &[u8]| {
        sse_data(b)
            .into_iter()
            .map(|d| match serde_json::from_str::<serde_json::Value>(&d) {
                Ok(mut v) => {
                    v["id"] = serde_json::Value::Null;
                    v["created"] = serde_json::Value::Null;
                    v.to_string()
                }
                Err(_) => d,
            })
            .collect::<Vec<_>>()
    };
    let events = normalize(&via_gw.body);
    assert_eq!(events, normalize(&direct.body));
    // role, 5 tokens, finish, usage, [DONE]
    assert_eq!(events.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_go_out_chunked_on_a_kept_connection() {
    // No delay between tokens: the upstream's chunks arrive together and are
    // relayed in one write, which must not change a byte of the stream.
    let mock = mock(MockOptions {
        tokens: 40,
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let body = br#"{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = build_request("POST", "/v1/chat/completions", "x", &[], body);
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let mut counts = Vec::new();
    for _ in 0..3 {
        let r = c.send(&req).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert!(
            r.keep_alive,
            "a stream must not cost the client its connection"
        );
        let events = sse_data(&r.body);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        for e in &events[..events.len() - 1] {
            serde_json::from_str::<serde_json::Value>(e).expect("each event whole");
        }
        counts.push(events.len());
    }
    // role, 40 tokens, finish, [DONE]; the same each time.
    assert_eq!(counts, vec![43; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_models_and_key_injection() {
    let mock = mock(MockOptions {
        api_key: Some("sk-upstream".into()),
        ..Default::default()
    })
    .await;
    let yaml = format!(
        "providers:\n  up:\n    kind: openai_compatible\n    base_url: {}\n    api_key: ${{SLUICE_TEST_KEY}}\nmodels:\n  emb:\n    targets: [ {{ provider: up, model: text-embedding-x }} ]\n  demo:\n    targets: [ {{ provider: up }} ]\n",
        mock.base_url()
    );
    let gw = Gateway::start(&yaml, &[("SLUICE_TEST_KEY", "sk-upstream")]).await;
    let r = post(
        gw.addr,
        "/v1/embeddings",
        &[
            ("authorization", "Bearer sk-client-secret"),
            ("x-api-key", "client"),
        ],
        br#"{"model":"emb","input":["a","b"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().unwrap()["data"].as_array().unwrap().len(), 2);
    let rec = mock.state.recorded();
    assert_eq!(rec[0].path, "/v1/embeddings");
    assert_eq!(rec[0].header("authorization"), Some("Bearer sk-upstream"));
    assert!(rec[0].header("x-api-key").is_none());
    assert!(rec[0]
        .body
        .windows(18)
        .any(|w| w == b"\"text-embedding-x\""));

    let models = get(gw.addr, "/v1/models").await.unwrap().json().unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["demo", "emb"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_the_right_status_and_openai_shape() {
    let mock = mock(MockOptions::default()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        "  dead:\n    kind: openai_compatible\n    base_url: http://{dead}/v1\n  slow:\n    kind: openai_compatible\n    base_url: {}\n    forward_headers: [\"x-mock-*\"]\n    timeouts: {{ first_byte: 300ms }}\n  nokey:\n    kind: openai\n    base_url: https://example.invalid/v1\n    api_key: ${{SLUICE_TEST_UNSET_VAR}}\n",
        mock.base_url()
    );
    let mut yaml = demo_config(&mock, &extra);
    yaml.push_str("  broken:\n    targets: [ { provider: dead } ]\n  slow:\n    targets: [ { provider: slow } ]\n  locked:\n    targets: [ { provider: nokey } ]\n");
    let gw = Gateway::start(&yaml, &[]).await;
    let chat = "/v1/chat/completions";
    type Case<'a> = (u16, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (400, chat, vec![], b"{not json".to_vec(), "Invalid JSON"),
        (
            400,
            chat,
            vec![],
            br#"{"model":"demo"}"#.to_vec(),
            "messages",
        ),
        (
            400,
            chat,
            vec![],
            br#"{"model":"demo","messages":[{"role":"user"}],"stream":1}"#.to_vec(),
            "'stream'",
        ),
        (
            404,
            chat,
            vec![],
            chat_body("nope", "x", false),
            "Available models: broken, demo, locked, slow",
        ),
        (
            404,
            "/v1/unknown",
            vec![],
            chat_body("demo", "x", false),
            "Unknown request URL",
        ),
        (
            503,
            chat,
            vec![],
            chat_body("locked", "x", false),
            "SLUICE_TEST_UNSET_VAR",
        ),
        (
            502,
            chat,
            vec![],
            chat_body("broken", "x", false),
            "unreachable",
        ),
        (
            504,
            chat,
            vec![("x-mock-fault", "stall")],
            chat_body("slow", "x", false),
            "timed out",
        ),
        (
            502,
            chat,
            vec![("x-mock-fault", "reset")],
            chat_body("demo", "x", false),
            "failed",
        ),
    ];
    for (status, path, headers, body, needle) in cases {
        let r = post(gw.addr, path, &headers, &body).await;
        assert_eq!(
            r.status,
            status,
            "{needle}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let v = error_json(&r);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "expected '{needle}' in '{msg}'");
    }
    // 405
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let r = c
        .send(&build_request("GET", "/v1/chat/completions", "x", &[], b""))
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    error_json(&r);
    // Upstream errors pass through with their status and body.
    let r = post(
        gw.addr,
        chat,
        &[("x-mock-fault", "status=429"), ("x-mock-retry-after", "2")],
        &chat_body("demo", "x", false),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(error_json(&r)["error"]["code"], "rate_limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413() {
    let mock = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    // Default limit is 10 MiB; refused on the declared length, before the body is sent.
    let full = build_request(
        "POST",
        "/v1/chat/completions",
        "x",
        &[],
        &sized_body(11 << 20, false),
    );
    let head_len = full.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let r = c.send(&full[..head_len]).await.unwrap();
    assert_eq!(r.status, 413);
    assert!(error_json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("10485760"));
    assert!(mock.state.recorded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_by_upstream_ends_with_a_terminal_error_event() {
    let mock = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-mock-fault", "truncate"), ("x-mock-fault-after", "2")],
        &chat_body("demo", "x", true),
    )
    .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    // role + 2 tokens, then the error; never half an event.
    assert_eq!(data.len(), 4, "{data:?}");
    for d in &data[..3] {
        serde_json::from_str::<serde_json::Value>(d).unwrap();
    }
    let err: serde_json::Value = serde_json::from_str(&data[3]).unwrap();
    assert_eq!(err["error"]["code"], "upstream_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_cancels_the_upstream() {
    let mock = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let req = build_request(
        "POST",
        "/v1/chat/completions",
        "x",
        &[("x-mock-itl-ms", "100"), ("x-mock-tokens", "100")],
        &chat_body("demo", "x", true),
    );
    // Read until the first token event, then drop the connection.
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_millis(400), c.send_with(&req, |_| {})).await;
    drop(c);
    // The 10 s stream must be abandoned well before it would end.
    let mut in_flight = String::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let m = gw.metrics().await;
        in_flight = m
            .lines()
            .find(|l| l.starts_with("sluice_requests_in_flight"))
            .unwrap_or("")
            .to_string();
        if in_flight.ends_with(" 0") && m.contains("status=\"499\"") {
            break;
        }
    }
    assert!(in_flight.ends_with(" 0"), "{in_flight}");
    assert!(gw
        .metrics()
        .await
        .contains("sluice_errors_total{kind=\"client_gone\"} 1"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_stream_in_flight() {
    let mock = mock(MockOptions::default()).await;
    let mut gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    let addr = gw.addr;
    let stream = tokio::spawn(async move {
        let mut c = Conn::connect(addr).await.unwrap();
        let req = build_request(
            "POST",
            "/v1/chat/completions",
            "x",
            &[("x-mock-itl-ms", "50"), ("x-mock-tokens", "20")],
            &chat_body("demo", "x", true),
        );
        c.send(&req).await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused while the stream drains.
    assert!(Conn::connect(addr).await.is_err());
    let r = stream.await.unwrap();
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(data.len(), 23);
    // The process leaves as soon as nothing is in flight, well inside the grace period.
    let mut status = None;
    for _ in 0..60 {
        if let Some(s) = gw.child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.expect("sluice did not exit").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_stream_ttfb() {
    let mock = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&mock, ""), &[]).await;
    for stream in [false, false, true] {
        let r = post(
            gw.addr,
            "/v1/chat/completions",
            &[("x-mock-ttft-ms", "20")],
            &chat_body("demo", "x", stream),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[],
        &chat_body("nope", "x", false),
    )
    .await;
    assert_eq!(r.status, 404);
    gw.metrics_when(
        "sluice_requests_total{model=\"-\",provider=\"-\",status=\"404\"}",
        1.0,
    )
    .await;
    // The last request is counted a moment before it leaves the in-flight
    // gauge: read once both have settled.
    let m = gw.metrics_at("sluice_requests_in_flight", 0.0).await;
    let route = "{model=\"demo\",provider=\"up\"}";
    assert_eq!(
        sample(
            &m,
            "sluice_requests_total{model=\"demo\",provider=\"up\",status=\"200\"}"
        ),
        3.0
    );
    assert_eq!(
        sample(
            &m,
            "sluice_requests_total{model=\"-\",provider=\"-\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&m, &format!("sluice_request_duration_seconds_count{route}")),
        3.0
    );
    assert_eq!(
        sample(
            &m,
            &format!("sluice_upstream_duration_seconds_count{route}")
        ),
        3.0
    );
    // Upstream time includes the mock's 20 ms time-to-first-token.
    assert!(sample(&m, &format!("sluice_upstream_duration_seconds_sum{route}")) >= 0.06);
    assert_eq!(
        sample(&m, &format!("sluice_stream_ttfb_seconds_count{route}")),
        1.0
    );
    assert!(sample(&m, &format!("sluice_stream_ttfb_seconds_sum{route}")) >= 0.02);
    assert_eq!(sample(&m, "sluice_requests_in_flight"), 0.0);
    assert_eq!(
        sample(&m, "sluice_errors_total{kind=\"unknown_model\"}"),
        1.0
    );
    assert!(m.contains("# TYPE sluice_request_duration_seconds histogram"));
}
