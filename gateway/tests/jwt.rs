//! JWT callers: ES256 keys from a JWKS file or URL (rotated while running),
//! HS256 with a shared secret, and every check that must refuse a token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use sluice_perf::mock::MockOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct SigningKey {
    kid: String,
    pem: String,
    jwk: serde_json::Value,
}

fn es256(kid: &str) -> SigningKey {
    let kp = rcgen::KeyPair::generate().unwrap();
    let raw = kp.public_key_raw();
    assert_eq!(raw.len(), 65, "uncompressed P-256 point");
    SigningKey {
        kid: kid.into(),
        pem: kp.serialize_pem(),
        jwk: serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
        }),
    }
}

fn jwks(keys: &[&SigningKey]) -> String {
    serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(tenant: &str, aud: &str, exp_in: i64) -> serde_json::Value {
    serde_json::json!({
        "sub": "user-7", "org": tenant, "aud": aud, "iss": "https://idp.test",
        "exp": (now() as i64 + exp_in), "roles": ["reader", "writer"],
    })
}

fn without(mut c: serde_json::Value, field: &str) -> serde_json::Value {
    c.as_object_mut().unwrap().remove(field);
    c
}

fn nbf_later(mut c: serde_json::Value) -> serde_json::Value {
    c["nbf"] = (now() + 3600).into();
    c
}

fn sign(k: &SigningKey, c: &serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(k.kid.clone());
    encode(&h, c, &EncodingKey::from_ec_pem(k.pem.as_bytes()).unwrap()).unwrap()
}

fn config(mock: &sluice_perf::mock::MockServer, jwks: &str, mode: &str) -> String {
    format!(
        "auth:
  mode: {mode}
  jwt:
    jwks: {jwks}
    secret: \"${{HS}}\"
    issuer: https://idp.test
    audience: sluice
    tenant_claim: org
tenants:
  acme: {{ models: [\"demo\"] }}
keys:
  - {{ id: app, tenant: acme, key: \"${{APP}}\" }}
{}",
        demo_config(mock, "")
    )
}

const ENV: &[(&str, &str)] = &[
    ("HS", "hs-shared-secret-0123456789"),
    ("APP", "sk-app-0123456789"),
];

async fn status(gw: &Gateway, token: &str) -> (u16, String) {
    let h = format!("Bearer {token}");
    let r = post(
        gw.addr,
        "/v1/chat/completions",
        &[("authorization", &h)],
        &chat_body("demo", "hi", false),
    )
    .await;
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_from_a_file_with_rotation_and_every_refusal() {
    let m = mock(MockOptions::default()).await;
    let dir = std::env::temp_dir().join(format!("sluice-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwks.json");
    let (k1, k2) = (es256("k1"), es256("k2"));
    std::fs::write(&file, jwks(&[&k1])).unwrap();
    let gw = Gateway::start(&config(&m, &file.display().to_string(), "keys_or_jwt"), ENV).await;
    assert_eq!(
        status(&gw, &sign(&k1, &claims("acme", "sluice", 300)))
            .await
            .0,
        200
    );
    // Keys still work beside tokens.
    assert_eq!(status(&gw, "sk-app-0123456789").await.0, 200);
    // Expired, wrong audience, unknown tenant, forged: 401 each.
    for (bad, why) in [
        (
            sign(&k1, &claims("acme", "sluice", -300)),
            "ExpiredSignature",
        ),
        (sign(&k1, &claims("acme", "other", 300)), "InvalidAudience"),
        (sign(&k1, &claims("ghost", "sluice", 300)), "tenant 'ghost'"),
        (
            sign(&k2, &claims("acme", "sluice", 300)),
            "unknown signing key 'k2'",
        ),
        // A configured audience must be present, not merely not wrong.
        (
            sign(&k1, &without(claims("acme", "sluice", 300), "aud")),
            "aud",
        ),
        (
            sign(&k1, &nbf_later(claims("acme", "sluice", 300))),
            "ImmatureSignature",
        ),
    ] {
        let (s, body) = status(&gw, &bad).await;
        assert_eq!(s, 401, "{why}: {body}");
        assert!(body.contains(why), "{why}: {body}");
    }
    // Rotation: k2 replaces k1 in the file; a k2 token is accepted at once
    // (an unknown kid reloads the JWKS), and k1 no longer is.
    std::fs::write(&file, jwks(&[&k2])).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        status(&gw, &sign(&k2, &claims("acme", "sluice", 300)))
            .await
            .0,
        200
    );
    assert_eq!(
        status(&gw, &sign(&k1, &claims("acme", "sluice", 300)))
            .await
            .0,
        401
    );
    // The caller's view names its subject and roles.
    let mut c = sluice_perf::client::Conn::connect(gw.addr).await.unwrap();
    let h = format!("Bearer {}", sign(&k2, &claims("acme", "sluice", 300)));
    let r = c
        .send(&sluice_perf::client::build_request(
            "GET",
            "/v1/key/info",
            "x",
            &[("authorization", &h)],
            b"",
        ))
        .await
        .unwrap();
    let v = r.json().unwrap();
    assert_eq!(v["subject"], "user-7");
    assert_eq!(v["roles"], serde_json::json!(["reader", "writer"]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves whatever JWKS is current at `GET /jwks`.
async fn jwks_server(doc: Arc<Mutex<String>>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let doc = doc.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let body = doc.lock().unwrap().clone();
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_from_a_url_and_hs256_with_a_secret() {
    let m = mock(MockOptions::default()).await;
    let (k1, k2) = (es256("k1"), es256("k2"));
    let doc = Arc::new(Mutex::new(jwks(&[&k1])));
    let url = jwks_server(doc.clone()).await;
    let gw = Gateway::start(&config(&m, &url, "jwt"), ENV).await;
    let ok = |k: &SigningKey| sign(k, &claims("acme", "sluice", 300));
    // The first fetch may still be on its way: retry briefly.
    let mut s = 0;
    for _ in 0..50 {
        s = status(&gw, &ok(&k1)).await.0;
        if s == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(s, 200);
    // Mode jwt: a plain key is not accepted.
    assert_eq!(status(&gw, "sk-app-0123456789").await.0, 401);
    *doc.lock().unwrap() = jwks(&[&k1, &k2]);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(status(&gw, &ok(&k2)).await.0, 200);
    // HS256 with the shared secret; a wrong secret is refused.
    let hs = |secret: &str| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims("acme", "sluice", 300),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    assert_eq!(status(&gw, &hs("hs-shared-secret-0123456789")).await.0, 200);
    let (s, body) = status(&gw, &hs("not-the-secret")).await;
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("InvalidSignature"), "{body}");
}
