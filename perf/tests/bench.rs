//! `sluice-bench` against a real mock on a loopback port: closed and open
//! loop, Poisson arrivals, a ramp, a JSONL mix of streamed and plain
//! requests, streaming metrics, errors by kind, and the HTML report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::Parser;
use sluice_perf::bench::{html, run, BenchArgs};
use sluice_perf::mock::{MockOptions, MockServer, MockState};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// A run against `url` with these further arguments.
async fn bench(url: &str, rest: &[&str]) -> sluice_perf::bench::Report {
    let mut list = vec!["--url", url];
    list.extend_from_slice(rest);
    run(&args(&list)).await.unwrap()
}

fn args(list: &[&str]) -> BenchArgs {
    let mut argv = vec!["sluice-bench", "-q"];
    argv.extend_from_slice(list);
    Cli::parse_from(argv).args
}

async fn mock(options: MockOptions) -> MockServer {
    MockServer::start(MockState::new(options)).await.unwrap()
}

const HI: &str = r#"{"model":"demo","messages":[{"role":"user","content":"hi"}]}"#;

fn chat_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/v1/chat/completions")
}

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("sluice-bench-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_every_request_and_times_streams_by_token() {
    let m = mock(MockOptions {
        tokens: 8,
        itl_ms: 2,
        ..Default::default()
    })
    .await;
    let mix = temp(
        "mix.jsonl",
        concat!(
            "{\"model\":\"demo\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n",
            "{\"body\":{\"model\":\"demo\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]},\"weight\":3}\n",
            "{\"body\":{\"model\":\"demo\",\"messages\":[]},\"headers\":{\"x-mock-fault\":\"status=503\"},\"weight\":0.5}\n",
        ),
    );
    let url = chat_url(m.addr);
    let r = bench(
        &url,
        &["-c", "4", "-n", "200", "--mix", mix.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.requests, 200);
    assert_eq!(r.shape.mode, "closed");
    assert!(r.send_lag.is_none(), "closed loop has no schedule to lag");
    let fails = r.errors.get("status_5xx").copied().unwrap_or(0);
    assert!(fails > 0 && r.ok + fails == 200, "{:?}", r.errors);
    // Streams: 8 tokens each, 2 ms apart.
    let itl = r.itl.as_ref().unwrap();
    assert!(itl.p50_us >= 1_500, "{}", itl.p50_us);
    assert!(r.ttft.is_some() && r.stream_tokens_per_s.is_some());
    assert_eq!(r.output_tokens % 8, 0);
    assert!(r.output_tokens >= 8 * 100, "{}", r.output_tokens);
    let page = html(&r);
    assert!(page.contains("<svg") && page.contains("Latency by percentile"));
    assert!(!page.contains("<script"));
    let _ = std::fs::remove_file(mix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_its_rate_and_counts_from_the_intended_send() {
    let m = mock(MockOptions::default()).await;
    let body = temp("body.json", HI);
    let url = chat_url(m.addr);
    for arrivals in ["constant", "poisson"] {
        let r = bench(
            &url,
            &[
                "-c",
                "8",
                "--rate",
                "400",
                "--arrivals",
                arrivals,
                "-d",
                "1s",
                "--warmup",
                "200ms",
                "--body",
                body.to_str().unwrap(),
            ],
        )
        .await;
        // 400/s for a second; Poisson within its noise.
        assert!(
            (300..=500).contains(&r.requests),
            "{arrivals}: {}",
            r.requests
        );
        assert_eq!(r.shape.arrivals, Some(arrivals));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        // Requests leave on time when the server keeps up.
        let lag = r.send_lag.as_ref().unwrap();
        assert!(lag.p50_us < 20_000, "{}", lag.p50_us);
    }
    // A server that stalls: latency counts from when each request was due,
    // so it is at least the stall, not the time on the wire.
    let slow = mock(MockOptions {
        ttft_ms: 50,
        ..Default::default()
    })
    .await;
    let url = chat_url(slow.addr);
    // One connection, a request due every 10 ms, for half a second.
    let behind = |body: std::path::PathBuf| {
        let url = url.clone();
        async move {
            let args = [
                "-c", "1", "--rate", "100", "-d", "500ms", "--warmup", "0s", "--body",
            ];
            let mut args = args.to_vec();
            args.push(body.to_str().unwrap());
            bench(&url, &args).await
        }
    };
    let r = behind(body.clone()).await;
    // One connection at 50 ms a request falls behind a 10 ms schedule.
    let lat = r.latency.as_ref().unwrap();
    assert!(lat.max_us > 200_000, "{}", lat.max_us);
    // Requests left late, waiting for the one busy connection.
    assert!(r.send_lag.as_ref().unwrap().max_us > 100_000);
    // The rate is what went out, not the schedule's: about 10 of the 50
    // due; the rest were never sent, and the run ends on time.
    assert!(r.rps < 40.0, "{}", r.rps);
    assert!(
        r.errors.get("unsent").copied().unwrap_or(0) >= 20,
        "{:?}",
        r.errors
    );
    // Streams: time to first token from the intended send holds the wait
    // for the busy connection; from the actual send it is the server's 50 ms.
    let stream = temp(
        "stream.json",
        r#"{"model":"demo","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    let r = behind(stream.clone()).await;
    let (ttft, sent) = (r.ttft.as_ref().unwrap(), r.ttft_sent.as_ref().unwrap());
    assert!(ttft.max_us > 100_000, "{}", ttft.max_us);
    assert!((50_000..100_000).contains(&sent.p50_us), "{}", sent.p50_us);
    let _ = std::fs::remove_file(body);
    let _ = std::fs::remove_file(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramps_step_the_rate_and_errors_are_told_apart() {
    let m = mock(MockOptions::default()).await;
    let body = temp("ramp.json", HI);
    let url = chat_url(m.addr);
    let r = bench(
        &url,
        &[
            "-c",
            "4",
            "--ramp",
            "100:1s, 400:1s",
            "--warmup",
            "0s",
            "--body",
            body.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.shape.mode, "ramp");
    let per_second: Vec<u64> = r.timeline.iter().map(|s| s.requests).collect();
    assert!(per_second.len() >= 2, "{per_second:?}");
    assert!((80..=120).contains(&per_second[0]), "{per_second:?}");
    assert!((350..=450).contains(&per_second[1]), "{per_second:?}");
    // Nobody listening: connect errors. A stalled server: timeouts.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = bench(&format!("http://{dead}/"), &["-c", "1", "-n", "3"]).await;
    assert_eq!(r.errors.get("connect"), Some(&3));
    let stalled = temp(
        "stall.jsonl",
        "{\"body\":{\"model\":\"demo\",\"messages\":[]},\"headers\":{\"x-mock-fault\":\"stall\"}}\n",
    );
    let r = bench(
        &url,
        &[
            "-c",
            "2",
            "-n",
            "2",
            "--timeout",
            "200ms",
            "--mix",
            stalled.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.errors.get("timeout"), Some(&2));
    let _ = std::fs::remove_file(body);
    let _ = std::fs::remove_file(stalled);
}

/// A bare HTTP/2 server: reads each request and answers a short stream.
/// Also answers how many connections it took.
async fn h2_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        while let Some(Ok(d)) = body.data().await {
                            let _ = body.flow_control().release_capacity(d.len());
                        }
                        let head = http::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(head, false).unwrap();
                        let token = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n";
                        let _ = send.send_data(bytes::Bytes::from(token.repeat(3)), false);
                        let _ =
                            send.send_data(bytes::Bytes::from_static(b"data: [DONE]\n\n"), true);
                    });
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_carries_several_streams_per_connection() {
    let (addr, conns) = h2_server().await;
    let body = temp(
        "h2.json",
        "{\"model\":\"demo\",\"stream\":true,\"messages\":[]}",
    );
    let url = chat_url(addr);
    let r = bench(
        &url,
        &[
            "--http2",
            "-c",
            "2",
            "--streams",
            "8",
            "-n",
            "400",
            "--body",
            body.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        (r.shape.protocol, r.shape.streams_per_connection),
        ("h2", 8)
    );
    assert_eq!(r.requests, 400);
    assert_eq!(r.ok, 400, "{:?}", r.errors);
    assert_eq!(r.output_tokens, 3 * 400);
    // 16 workers shared 2 connections.
    assert_eq!(conns.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert!(r.ttft.is_some());
    let _ = std::fs::remove_file(body);
}
