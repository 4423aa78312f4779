//! Upstream selection and resilience against real mocks on loopback ports:
//! balancing policies, content rules, retries, breakers and fallbacks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_perf::client::{build_request, Conn};
use sluice_perf::mock::controls::Fault;
use sluice_perf::mock::{MockOptions, MockServer};

fn provider(name: &str, mock: &MockServer) -> String {
    format!(
        "  {name}:\n    kind: openai_compatible\n    base_url: {}\n    forward_headers: [\"x-mock-*\"]\n",
        mock.base_url()
    )
}

async fn mocks(n: usize) -> Vec<MockServer> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(mock(MockOptions::default()).await);
    }
    v
}

/// A non-stream chat request for `model`.
async fn chat(gw: &Gateway, model: &str) -> sluice_perf::client::Response {
    post(
        gw.addr,
        "/v1/chat/completions",
        &[],
        &chat_body(model, "hi", false),
    )
    .await
}

/// Sends `body` on one keep-alive connection `n` times; the targets that served, in order.
async fn targets_of(gw: &Gateway, body: &[u8], n: usize) -> Vec<String> {
    let mut c = Conn::connect(gw.addr).await.unwrap();
    let req = build_request(
        "POST",
        "/v1/chat/completions",
        "localhost",
        &[("content-type", "application/json")],
        body,
    );
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = c.send(&req).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        out.push(r.header("x-sluice-target").unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_is_exact_and_smooth() {
    let m = mocks(2).await;
    let cfg = format!(
        "providers:\n{}{}models:\n  w:\n    balance: weighted\n    targets:\n      - {{ provider: a, model: heavy, weight: 3 }}\n      - {{ provider: b, model: light, weight: 1 }}\n",
        provider("a", &m[0]),
        provider("b", &m[1])
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let picks = targets_of(&gw, &chat_body("w", "hi", false), 4000).await;
    let heavy = picks.iter().filter(|t| *t == "a/heavy").count();
    let share = heavy as f64 / picks.len() as f64;
    assert!((share - 0.75).abs() <= 0.02, "heavy share {share}");
    let longest = picks
        .split(|t| t != "a/heavy")
        .map(<[String]>::len)
        .max()
        .unwrap();
    assert!(longest <= 3, "a run of {longest} heavy picks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_sends_new_requests_to_the_idle_target() {
    let m = mocks(2).await;
    m[0].state.set_extra_ttft_ms(1500);
    // Equal loads go to the heavier target: the first request lands on the slow one.
    let cfg = format!(
        "providers:\n{}{}models:\n  lc:\n    balance: least_connections\n    targets: [ {{ provider: slow, model: s, weight: 2 }}, {{ provider: fast, model: f, weight: 1 }} ]\n",
        provider("slow", &m[0]),
        provider("fast", &m[1])
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let addr = gw.addr;
    let busy = tokio::spawn(async move {
        post(
            addr,
            "/v1/chat/completions",
            &[],
            &chat_body("lc", "hi", false),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While the slow target holds a request, every new one goes to the idle target.
    let picks = targets_of(&gw, &chat_body("lc", "hi", false), 20).await;
    assert!(picks.iter().all(|t| t == "fast/f"), "{picks:?}");
    let r = busy.await.unwrap();
    assert_eq!(r.header("x-sluice-target"), Some("slow/s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_policy_moves_away_from_a_slowed_target() {
    let m = mocks(2).await;
    for s in &m {
        s.state.set_extra_ttft_ms(3);
    }
    let cfg = format!(
        "providers:\n{}{}models:\n  lat:\n    balance: latency\n    targets: [ {{ provider: a, model: a }}, {{ provider: b, model: b }} ]\n",
        provider("a", &m[0]),
        provider("b", &m[1])
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let body = chat_body("lat", "hi", false);
    let warm = targets_of(&gw, &body, 100).await;
    assert!(
        warm.iter().any(|t| t == "a/a") && warm.iter().any(|t| t == "b/b"),
        "both measured"
    );
    m[0].state.set_extra_ttft_ms(60);
    let after = targets_of(&gw, &body, 200).await;
    let late_a = after[100..].iter().filter(|t| *t == "a/a").count();
    assert!(
        late_a <= 10,
        "{late_a} of the last 100 requests still went to the slow target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_rules_route_by_each_matcher_and_first_match_wins() {
    let m = mock(MockOptions::default()).await;
    let mut models = String::new();
    for name in [
        "coder", "cheap", "long", "tools", "vision", "gpt", "default",
    ] {
        models.push_str(&format!(
            "  {name}:\n    targets: [ {{ provider: up, model: {name}-up }} ]\n"
        ));
    }
    let cfg = format!(
        "providers:\n{}models:\n{models}routes:\n  - when: {{ prompt_regex: \"(?i)\\\\b(code|rust)\\\\b\" }}\n    to: coder\n  - when: {{ header: {{ x-tier: free }} }}\n    to: cheap\n  - when: {{ min_prompt_tokens: 200 }}\n    to: long\n  - when: {{ has_tools: true }}\n    to: tools\n  - when: {{ has_images: true }}\n    to: vision\n  - when: {{ model: \"gpt-4*\" }}\n    to: gpt\n",
        provider("up", &m)
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let send = |headers: Vec<(&'static str, &'static str)>, body: serde_json::Value| {
        let addr = gw.addr;
        async move {
            let r = post(
                addr,
                "/v1/chat/completions",
                &headers,
                body.to_string().as_bytes(),
            )
            .await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            r.header("x-sluice-target").unwrap().to_string()
        }
    };
    let msg = |text: &str| serde_json::json!({"model": "default", "messages": [{"role": "user", "content": text}]});
    assert_eq!(send(vec![], msg("fix my Rust code")).await, "up/coder-up");
    assert_eq!(
        send(vec![("x-tier", "free")], msg("hello")).await,
        "up/cheap-up"
    );
    // The regex rule comes first.
    assert_eq!(
        send(vec![("x-tier", "free")], msg("some code")).await,
        "up/coder-up"
    );
    assert_eq!(
        send(vec![], msg(&"many words here ".repeat(80))).await,
        "up/long-up"
    );
    let mut tools = msg("weather?");
    tools["tools"] = serde_json::json!([{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]);
    assert_eq!(send(vec![], tools).await, "up/tools-up");
    let image = serde_json::json!({"model": "default", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    ]}]});
    assert_eq!(send(vec![], image).await, "up/vision-up");
    let mut glob = msg("hello");
    glob["model"] = "gpt-4o-mini".into();
    assert_eq!(send(vec![], glob).await, "up/gpt-up");
    assert_eq!(send(vec![], msg("hello")).await, "up/default-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_target_costs_no_client_errors_and_returns_after_restart() {
    let m = mocks(2).await;
    let cfg = format!(
        "providers:\n{}{}models:\n  ha:\n    targets: [ {{ provider: a, model: a }}, {{ provider: b, model: b }} ]\n    breaker: {{ failures: 3, cooldown: 1s }}\n",
        provider("a", &m[0]),
        provider("b", &m[1])
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let mut m = m.into_iter();
    let (a, b) = (m.next().unwrap(), m.next().unwrap());
    let (a_addr, a_state) = (a.addr, a.state.clone());
    let stop_at = Instant::now() + Duration::from_secs(5);
    let addr = gw.addr;
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            let req = build_request(
                "POST",
                "/v1/chat/completions",
                "localhost",
                &[("content-type", "application/json")],
                &chat_body("ha", "hi", false),
            );
            let (mut ok, mut failed) = (0u32, Vec::new());
            while Instant::now() < stop_at {
                match c.send(&req).await {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => {
                        failed.push(format!("{} {}", r.status, String::from_utf8_lossy(&r.body)))
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(a);
    let at_kill = a_state.request_count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b_mid = b.state.request_count();
    let mut restarted = None;
    for _ in 0..50 {
        // The port may be briefly taken by an outgoing connection.
        if let Ok(s) = MockServer::start_at(a_addr, a_state.clone()).await {
            restarted = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a = restarted.expect("mock a did not restart");
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "client-visible errors: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 500, "only {ok} requests");
    assert!(b.state.request_count() > b_mid, "the survivor kept serving");
    // Half-open probing brought the restarted target back.
    assert!(
        a.state.request_count() > at_kill + 10,
        "restarted target got no traffic"
    );
    let m = gw.metrics().await;
    assert!(
        sample(
            &m,
            "sluice_target_ejections_total{model=\"ha\",target=\"a/a\"}"
        ) >= 1.0
    );
    let up: serde_json::Value =
        serde_json::from_slice(&get(gw.admin, "/admin/upstreams").await.unwrap().body).unwrap();
    let t = &up["models"][0]["targets"][0];
    assert_eq!(t["target"], "a/a");
    assert_eq!(t["breaker"], "closed", "{up}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_honour_retry_after_and_spare_4xx_and_started_streams() {
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(&demo_config(&m, ""), &[]).await;
    let body = chat_body("demo", "hi", false);
    // 429 with Retry-After: 1, healed while Sluice waits.
    m.state.set_fault(Some(Fault::Status(429)), Some(1));
    let state = m.state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        state.set_fault(None, None);
    });
    let t0 = Instant::now();
    let r = post(gw.addr, "/v1/chat/completions", &[], &body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "retried after {:?}",
        t0.elapsed()
    );
    assert_eq!(r.header("x-sluice-attempts"), Some("2"));
    // A 400 is the client's problem: one attempt, relayed.
    let before = m.state.request_count();
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-mock-fault", "status=400")],
        &body,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-sluice-attempts"), Some("1"));
    assert_eq!(m.state.request_count(), before + 1);
    // A 500 is retried up to the attempts limit, then relayed.
    let before = m.state.request_count();
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-mock-fault", "status=500")],
        &body,
    )
    .await;
    assert_eq!(r.status, 500);
    error_json(&r);
    assert_eq!(r.header("x-sluice-attempts"), Some("3"));
    assert_eq!(m.state.request_count(), before + 3);
    // A stream cut after its first tokens is not retried; it ends with an error event.
    let before = m.state.request_count();
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-mock-fault", "truncate"), ("x-mock-fault-after", "2")],
        &chat_body("demo", "hi", true),
    )
    .await;
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{data:?}");
    assert_eq!(m.state.request_count(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_cover_a_dead_pool_and_an_open_breaker_fails_fast() {
    let m = mock(MockOptions::default()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = format!(
        "providers:\n{}  gone:\n    kind: openai_compatible\n    base_url: http://{dead}/v1\nmodels:\n  primary:\n    targets: [ {{ provider: gone, model: p }} ]\n    retry: {{ attempts: 2, backoff: 10ms }}\n    breaker: {{ failures: 2, cooldown: 30s }}\n    fallback: [ backup ]\n  backup:\n    targets: [ {{ provider: up, model: b }} ]\n  lonely:\n    targets: [ {{ provider: gone, model: l }} ]\n    retry: {{ attempts: 2, backoff: 10ms }}\n    breaker: {{ failures: 2, cooldown: 30s }}\n",
        provider("up", &m)
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let r = chat(&gw, "primary").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-sluice-target"), Some("up/b"));
    assert_eq!(r.header("x-sluice-attempts"), Some("3"));
    // With no fallback: the connect error, then (breaker open) a fast 503.
    let r = chat(&gw, "lonely").await;
    assert_eq!(r.status, 502);
    error_json(&r);
    let t0 = Instant::now();
    let r = chat(&gw, "lonely").await;
    assert_eq!(r.status, 503);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after));
    assert_eq!(error_json(&r)["error"]["code"], "no_healthy_target");
    let m = gw.metrics().await;
    assert_eq!(
        sample(&m, "sluice_fallbacks_total{from=\"primary\",to=\"backup\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_length_refusals_go_to_the_larger_model() {
    let small = mock(MockOptions::default()).await;
    small.state.set_fault(Some(Fault::ContextLength), None);
    let big = mock(MockOptions::default()).await;
    let cfg = format!(
        "providers:\n{}{}models:\n  small:\n    targets: [ {{ provider: s, model: s }} ]\n    fallback_on: {{ context_length: big }}\n  big:\n    targets: [ {{ provider: b, model: b }} ]\n  plain:\n    targets: [ {{ provider: s, model: p }} ]\n",
        provider("s", &small),
        provider("b", &big)
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let r = chat(&gw, "small").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-sluice-target"), Some("b/b"));
    assert_eq!(small.state.request_count(), 1, "a refusal is not retried");
    // Without `fallback_on`, the refusal is the answer.
    let r = chat(&gw, "plain").await;
    assert_eq!(r.status, 400);
    assert!(error_json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("context length"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_eject_and_restore_without_traffic() {
    let m = mocks(2).await;
    let cfg = format!(
        "providers:\n{}    health_check: {{ interval: 100ms, path: /models, timeout: 1s }}\n{}models:\n  hc:\n    targets: [ {{ provider: a, model: a }}, {{ provider: b, model: b }} ]\n",
        provider("a", &m[0]),
        provider("b", &m[1])
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let breaker = || async {
        let up: serde_json::Value =
            serde_json::from_slice(&get(gw.admin, "/admin/upstreams").await.unwrap().body).unwrap();
        up["models"][0]["targets"][0]["breaker"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let wait_for = |want: &'static str| {
        let breaker = &breaker;
        async move {
            let deadline = Instant::now() + Duration::from_secs(3);
            while breaker().await != want {
                assert!(Instant::now() < deadline, "breaker never became {want}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(breaker().await, "closed");
    m[0].state.set_fault(Some(Fault::Status(503)), None);
    wait_for("open").await;
    let picks = targets_of(&gw, &chat_body("hc", "hi", false), 10).await;
    assert!(picks.iter().all(|t| t == "b/b"), "{picks:?}");
    m[0].state.set_fault(None, None);
    wait_for("closed").await;
    let picks = targets_of(&gw, &chat_body("hc", "hi", false), 10).await;
    assert_eq!(picks.iter().filter(|t| *t == "a/a").count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_ends_with_an_error_event_on_the_models_idle_timeout() {
    let m = mock(MockOptions::default()).await;
    let cfg = format!(
        "providers:\n{}models:\n  s:\n    targets: [ {{ provider: up, model: s }} ]\n    timeouts: {{ idle: 300ms }}\n",
        provider("up", &m)
    );
    let gw = Gateway::start(&cfg, &[]).await;
    let t0 = Instant::now();
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[("x-mock-fault", "stall"), ("x-mock-fault-after", "2")],
        &chat_body("s", "hi", true),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "hung for {:?}",
        t0.elapsed()
    );
    let data = sse_data(&r.body);
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{data:?}");
    assert!(data.len() >= 3, "tokens before the error: {data:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_cannot_take_the_request_passes_it_on() {
    let m = mock(MockOptions::default()).await;
    let cfg = format!(
        "providers:\n{}  an:\n    kind: anthropic\n    base_url: {}\n    api_key: ${{AN_KEY}}\nmodels:\n  mixed:\n    targets: [ {{ provider: an, model: c }}, {{ provider: up, model: o }} ]\n",
        provider("up", &m),
        m.origin()
    );
    let gw = Gateway::start(&cfg, &[("AN_KEY", "k")]).await;
    // Completions only go to OpenAI-format upstreams: whichever target the
    // pool offers first, the OpenAI one serves.
    let body =
        serde_json::json!({"model": "mixed", "prompt": "say hi", "max_tokens": 4}).to_string();
    for _ in 0..4 {
        let r = post(gw.addr, "/v1/completions", &[], body.as_bytes()).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-sluice-target"), Some("up/o"));
        assert_eq!(r.header("x-sluice-attempts"), Some("1"));
    }
}
