//! Governance against a real gateway and mock: keys in every SDK's header,
//! errors in the client's format, access control, limits and their headers,
//! and the admin API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use sluice_perf::client::{build_request, Conn, Response};
use sluice_perf::mock::MockOptions;

pub const ADMIN_TOKEN: &str = "admin-secret-token";

async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut c = Conn::connect(addr).await.unwrap();
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    c.send(&build_request(method, path, "localhost", &h, body))
        .await
        .unwrap()
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: serde_json::Value) -> Response {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    call(
        gw.admin,
        method,
        path,
        &[("authorization", &bearer)],
        body.to_string().as_bytes(),
    )
    .await
}

fn config(mock: &sluice_perf::mock::MockServer, extra: &str) -> String {
    format!(
        "auth: {{ mode: keys, admin_token: \"${{ADMIN}}\" }}
tenants:
  acme: {{ models: [\"demo*\"], limits: {{ rpm: 1000 }}, metadata: {{ tier: gold }} }}
  free: {{ models: [\"demo\"], endpoints: [\"/v1/chat/*\", \"/v1/models\", \"/v1/key/info\"], metadata: {{ tier: free }} }}
keys:
  - {{ id: acme-app, tenant: acme, key: \"${{ACME_KEY}}\", limits: {{ rpm: 5, tpm: 100000 }} }}
  - {{ id: free-1, tenant: free, key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 }}
{extra}{}",
        demo_config(mock, "")
    )
}

const ENV: &[(&str, &str)] = &[("ADMIN", ADMIN_TOKEN), ("ACME_KEY", "sk-acme-0123456789")];

fn chat(model: &str) -> Vec<u8> {
    chat_body(model, "hello there", false)
}

/// A chat with model `demo` under this `authorization` header.
async fn chat_as(addr: std::net::SocketAddr, authorization: &str) -> Response {
    post(
        addr,
        "/v1/chat/completions",
        &[("authorization", authorization)],
        &chat("demo"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_in_every_sdk_header_and_errors_speak_the_clients_format() {
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(&config(&m, ""), ENV).await;
    for h in [
        ("authorization", "Bearer sk-acme-0123456789"),
        ("x-api-key", "sk-acme-0123456789"),
        ("api-key", "sk-acme-0123456789"),
    ] {
        let r = post(gw.addr, "/v1/chat/completions", &[h], &chat("demo")).await;
        assert_eq!(r.status, 200, "{h:?}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.header("x-sluice-request-id").unwrap().starts_with("req_"));
    }
    // No key, a wrong key: 401 in OpenAI's shape...
    let r = post(gw.addr, "/v1/chat/completions", &[], &chat("demo")).await;
    assert_eq!(r.status, 401);
    assert_eq!(error_json(&r)["error"]["code"], "invalid_api_key");
    let r = chat_as(gw.addr, "Bearer sk-wrong-key-000").await;
    assert_eq!(r.status, 401);
    let msg = error_json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("sk-****-000") && !msg.contains("wrong"),
        "{msg}"
    );
    // ...and in Anthropic's on the Messages endpoint.
    let body = serde_json::json!({"model": "demo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let r = post(gw.addr, "/v1/messages", &[], body.to_string().as_bytes()).await;
    assert_eq!(r.status, 401);
    let v = r.json().unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");
    // Passthrough-free paths and model listing need a key too.
    assert_eq!(get(gw.addr, "/v1/models").await.unwrap().status, 401);
    // Nothing reached the upstream for refused requests.
    assert_eq!(m.state.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_and_endpoints_follow_the_tenant_and_key_lists() {
    let m = mock(MockOptions::default()).await;
    let extra = "  other: { targets: [ { provider: up, model: x } ] }\n";
    let mut yaml = config(&m, "");
    yaml.push_str(extra);
    let gw = Gateway::start(&yaml, ENV).await;
    let free = [("authorization", "Bearer test")];
    let r = post(gw.addr, "/v1/chat/completions", &free, &chat("other")).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(error_json(&r)["error"]["code"], "model_not_allowed");
    assert!(error_json(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'other'"));
    let r = post(
        gw.addr,
        "/v1/embeddings",
        &free,
        br#"{"model":"demo","input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(error_json(&r)["error"]["code"], "endpoint_not_allowed");
    // The model list shows only what the caller may use.
    let r = call(gw.addr, "GET", "/v1/models", &free, b"").await;
    let ids: Vec<String> = r.json().unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["demo"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_answer_429_with_openai_headers() {
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(&config(&m, ""), ENV).await;
    let key = [("authorization", "Bearer sk-acme-0123456789")];
    let mut ok = 0;
    let mut last = None;
    for _ in 0..8 {
        let r = post(gw.addr, "/v1/chat/completions", &key, &chat("demo")).await;
        if r.status == 200 {
            ok += 1;
            // Everything about the answer if this fails: it was seen once, unexplained.
            assert_eq!(
                r.header("x-ratelimit-limit-requests"),
                Some("5"),
                "{:?} {}",
                r.headers,
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("100000"));
            assert!(r.header("x-ratelimit-reset-requests").is_some());
        }
        last = Some(r);
    }
    // Five a minute, unless the minute turned during the loop.
    assert!((5..=6).contains(&ok), "{ok}");
    let r = last.unwrap();
    assert_eq!(r.status, 429);
    let v = error_json(&r);
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    // The key's own view of it.
    let r = call(gw.addr, "GET", "/v1/key/info", &key, b"").await;
    let v = r.json().unwrap();
    assert_eq!(v["key"]["id"], "acme-app");
    assert_eq!(v["key"]["limits"]["rpm"], 5);
    assert_eq!(v["tenant"]["id"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_limits_reserve_max_tokens_and_settle_with_usage() {
    let m = mock(MockOptions::default()).await;
    let gw = Gateway::start(
        &format!(
            "auth: keys
tenants: {{ t: {{}} }}
keys:
  - {{ id: k, tenant: t, key: \"${{K}}\", limits: {{ tpm: 1000 }} }}
{}",
            demo_config(&m, "")
        ),
        &[("K", "sk-tokens-123456")],
    )
    .await;
    let key = [("authorization", "Bearer sk-tokens-123456")];
    let body = |max: u64| {
        serde_json::json!({"model": "demo", "max_tokens": max, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
    };
    // More than the whole minute's tokens: refused outright, with the reason.
    let r = post(gw.addr, "/v1/chat/completions", &key, body(5000).as_bytes()).await;
    assert_eq!(r.status, 429);
    let v = error_json(&r);
    assert_eq!(v["error"]["type"], "tokens");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("more than the limit"));
    // 600 reserved, 16 + a few used: the next 600 fits after settlement.
    let r = post(gw.addr, "/v1/chat/completions", &key, body(600).as_bytes()).await;
    assert_eq!(r.status, 200);
    // A request settles just after its answer goes out, before it is
    // counted: wait for the count (the next request may come on another
    // connection, served while this one still settles).
    gw.metrics_when(
        "sluice_requests_total{model=\"demo\",provider=\"up\",status=\"200\"}",
        1.0,
    )
    .await;
    let r = post(gw.addr, "/v1/chat/completions", &key, body(600).as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let left: u64 = r
        .header("x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert!(left < 1000 - 600, "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_creates_disables_rotates_and_deletes_keys() {
    let m = mock(MockOptions::default()).await;
    let dir = std::env::temp_dir().join(format!("sluice-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let yaml = config(
        &m,
        &format!("store: {{ kind: memory, state: {} }}\n", state.display()),
    );
    let gw = Gateway::start(&yaml, ENV).await;
    // Without the admin token: 401.
    let r = call(gw.admin, "GET", "/admin/keys", &[], b"").await;
    assert_eq!(r.status, 401);
    let r = admin(
        &gw,
        "POST",
        "/admin/tenants",
        serde_json::json!({"name": "beta", "models": ["demo"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = admin(
        &gw,
        "POST",
        "/admin/keys",
        serde_json::json!({"tenant": "beta", "id": "beta-1"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let secret = r.json().unwrap()["key"].as_str().unwrap().to_string();
    let use_key = |s: String| async move {
        let h = format!("Bearer {s}");
        chat_as(gw.addr, &h).await.status
    };
    assert_eq!(use_key(secret.clone()).await, 200);
    // Listing never shows secrets.
    let r = admin(&gw, "GET", "/admin/keys", serde_json::json!({})).await;
    assert!(!String::from_utf8_lossy(&r.body).contains(&secret));
    assert_eq!(
        admin(
            &gw,
            "POST",
            "/admin/keys/beta-1/disable",
            serde_json::json!({})
        )
        .await
        .status,
        200
    );
    assert_eq!(use_key(secret.clone()).await, 401);
    assert_eq!(
        admin(
            &gw,
            "POST",
            "/admin/keys/beta-1/enable",
            serde_json::json!({})
        )
        .await
        .status,
        200
    );
    let r = admin(
        &gw,
        "POST",
        "/admin/keys/beta-1/rotate",
        serde_json::json!({}),
    )
    .await;
    let rotated = r.json().unwrap()["key"].as_str().unwrap().to_string();
    assert_eq!(use_key(secret.clone()).await, 401);
    assert_eq!(use_key(rotated.clone()).await, 200);
    // A key for a tenant that does not exist is refused; so is a duplicate id.
    let r = admin(
        &gw,
        "POST",
        "/admin/keys",
        serde_json::json!({"tenant": "ghost"}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = admin(
        &gw,
        "POST",
        "/admin/keys",
        serde_json::json!({"tenant": "beta", "id": "beta-1"}),
    )
    .await;
    assert_eq!(r.status, 409);
    // Changes survive a restart through the memory store's state file.
    drop(gw);
    let gw = Gateway::start(&yaml, ENV).await;
    let h = format!("Bearer {rotated}");
    let r = chat_as(gw.addr, &h).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        admin(&gw, "DELETE", "/admin/keys/beta-1", serde_json::json!({}))
            .await
            .status,
        200
    );
    let r = chat_as(gw.addr, &h).await;
    assert_eq!(r.status, 401);
    // A tenant with keys cannot be deleted.
    let r = admin(&gw, "DELETE", "/admin/tenants/acme", serde_json::json!({})).await;
    assert_eq!(r.status, 409);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_on_tenant_and_key_metadata() {
    let m = mock(MockOptions::default()).await;
    let yaml = format!(
        "{}  premium: {{ targets: [ {{ provider: up, model: premium-upstream }} ] }}
routes:
  - {{ when: {{ metadata: {{ tier: gold }} }}, to: premium }}
",
        config(&m, "")
    );
    let gw = Gateway::start(&yaml, ENV).await;
    let r = chat_as(gw.addr, "Bearer sk-acme-0123456789").await;
    assert_eq!(r.header("x-sluice-target"), Some("up/premium-upstream"));
    let r = chat_as(gw.addr, "Bearer test").await;
    assert_eq!(r.header("x-sluice-target"), Some("up/upstream-demo"));
}
