//! TLS on both sides: Sluice's TLS listener (ALPN h2 and http/1.1) and
//! upstream TLS verified against a configured CA, with h2 chosen by ALPN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use sluice_perf::mock::MockOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

/// A throwaway CA and a `localhost` leaf it signed, as DER and as PEM files.
struct Pki {
    ca_der: CertificateDer<'static>,
    leaf_der: CertificateDer<'static>,
    leaf_key_der: Vec<u8>,
    dir: PathBuf,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Sluice test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("sluice-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem()).unwrap();
        Pki {
            ca_der: ca.der().clone(),
            leaf_der: leaf.der().clone(),
            leaf_key_der: leaf_key.serialize_der(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    // The TLS listener may come up a moment after the plain one.
    for _ in 0..50 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await {
            let name = ServerName::try_from("localhost").unwrap();
            return pki.client(alpn).connect(name, tcp).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("TLS listener {addr} not reachable");
}

async fn tls_gateway(pki: &Pki, mock: &sluice_perf::mock::MockServer) -> Gateway {
    let server = format!(
        "  tls: {{ listen: \"127.0.0.1:{{port}}\", cert: \"{}\", key: \"{}\" }}\n",
        pki.path("leaf.pem"),
        pki.path("leaf.key")
    );
    Gateway::start_with_server(&server, &demo_config(mock, ""), &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_negotiates_h2_and_http11() {
    let pki = Pki::new("listener");
    let mock = mock(MockOptions::default()).await;
    let gw = tls_gateway(&pki, &mock).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], gw.extra_port));

    // h2 by ALPN
    let tls = tls_connect(&pki, addr, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("https://localhost/v1/chat/completions")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from(chat_body("demo", "hi", false)), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(c) = body.data().await {
        out.extend_from_slice(&c.unwrap());
    }
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["object"], "chat.completion");

    // http/1.1 by ALPN
    let mut tls = tls_connect(&pki, addr, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let body = chat_body("demo", "hi", false);
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("chat.completion"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_is_verified_against_the_configured_ca() {
    let pki = Pki::new("upstream");
    let mock = mock(MockOptions {
        tokens: 4,
        ..Default::default()
    })
    .await;
    // Sluice A terminates TLS in front of the mock; Sluice B is the gateway under test.
    let a = tls_gateway(&pki, &mock).await;
    let _ = tls_connect(&pki, SocketAddr::from(([127, 0, 0, 1], a.extra_port)), &[]).await;
    let yaml = format!(
        "providers:\n  trusted:\n    kind: openai_compatible\n    base_url: https://localhost:{port}/v1\n    tls: {{ ca_file: \"{ca}\" }}\n  untrusted:\n    kind: openai_compatible\n    base_url: https://localhost:{port}/v1\n  wrong_name:\n    kind: openai_compatible\n    base_url: https://127.0.0.1:{port}/v1\n    tls: {{ ca_file: \"{ca}\" }}\nmodels:\n  good:\n    targets: [ {{ provider: trusted, model: demo }} ]\n  bad:\n    targets: [ {{ provider: untrusted, model: demo }} ]\n  mismatch:\n    targets: [ {{ provider: wrong_name, model: demo }} ]\n",
        port = a.extra_port,
        ca = pki.path("ca.pem")
    );
    let b = Gateway::start(&yaml, &[]).await;

    for stream in [false, true] {
        let r = post(
            b.addr,
            "/v1/chat/completions",
            &[],
            &chat_body("good", "hi", stream),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        if stream {
            let data = sse_data(&r.body);
            assert_eq!(data.len(), 7, "{data:?}");
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        }
    }
    // Not trusted by the system roots, or not valid for the name: refused, never silently accepted.
    for model in ["bad", "mismatch"] {
        let r = post(
            b.addr,
            "/v1/chat/completions",
            &[],
            &chat_body(model, "hi", false),
        )
        .await;
        assert_eq!(r.status, 502, "{model}");
        let msg = error_json(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("invalid peer certificate"), "{model}: {msg}");
    }
    assert_eq!(mock.state.recorded().len(), 2);
}

/// An h2-only TLS upstream: a request reaches it only if the gateway chose h2 by ALPN.
/// Returns its address, the requests served and the connections accepted.
async fn h2_only_upstream(pki: &Pki) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![pki.leaf_der.clone()],
        PrivateKeyDer::Pkcs8(pki.leaf_key_der.clone().into()),
    )
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let conns = Arc::new(AtomicUsize::new(0));
    let (count, accepted) = (served.clone(), conns.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                // `accept` drives the connection, so each stream runs in its own task.
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let count = count.clone();
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        while let Some(Ok(c)) = body.data().await {
                            let _ = body.flow_control().release_capacity(c.len());
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        let resp = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/json")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(resp, false).unwrap();
                        let json = r#"{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"over h2"},"finish_reason":"stop"}]}"#;
                        let _ = send.send_data(Bytes::from_static(json.as_bytes()), true);
                    });
                }
            });
        }
    });
    (addr, served, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_h2_is_negotiated_by_alpn_and_pooled() {
    let pki = Pki::new("h2");
    let (addr, served, conns) = h2_only_upstream(&pki).await;
    let yaml = format!(
        "providers:\n  h2up:\n    kind: openai_compatible\n    base_url: https://localhost:{}/v1\n    tls: {{ ca_file: \"{}\" }}\nmodels:\n  demo:\n    targets: [ {{ provider: h2up }} ]\n  filtered:\n    targets: [ {{ provider: h2up }} ]\n    filters: {{ pii: {{ action: mask }} }}\n",
        addr.port(),
        pki.path("ca.pem")
    );
    let gw = Gateway::start(&yaml, &[]).await;
    // Relayed as it came, and re-rendered after the filters looked at it:
    // each answer's connection is back in the pool before the answer goes out.
    for model in ["demo", "demo", "demo", "filtered", "filtered", "filtered"] {
        let r = post(
            gw.addr,
            "/v1/chat/completions",
            &[],
            &chat_body(model, "hi", false),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.json().unwrap()["choices"][0]["message"]["content"],
            "over h2"
        );
    }
    assert_eq!(served.load(Ordering::SeqCst), 6);
    assert_eq!(conns.load(Ordering::SeqCst), 1, "h2 connection not reused");
}
