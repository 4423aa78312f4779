use super::*;
use crate::config::schema::RawConfig;
use crate::errors::GatewayError;
use http::HeaderMap;

fn gov(yaml: &str) -> Governance {
    let raw: RawConfig = serde_yaml::from_str(yaml).unwrap();
    Governance::compile(&raw, &prometheus::Registry::new())
        .map_err(|p| format!("{p:?}"))
        .unwrap()
}

/// Authenticates on a throwaway runtime (the unit tests are synchronous).
trait Auth {
    fn auth(&self, h: &HeaderMap) -> Result<Option<Caller>, GatewayError>;
}

impl Auth for Governance {
    fn auth(&self, h: &HeaderMap) -> Result<Option<Caller>, GatewayError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(self.authenticate(h))
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// `Governance::admit` on a throwaway runtime.
fn admit(
    g: &Governance,
    c: Option<&Caller>,
    model: &str,
    prompt: u64,
    max: Option<u64>,
) -> Result<admit::Ticket, GatewayError> {
    rt().block_on(g.admit(c, model, model, prompt, max))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

const BASE: &str = "
auth: { mode: keys }
tenants:
  acme: { models: ['gpt*'], limits: { rpm: 5 } }
keys:
  - { id: a, tenant: acme, key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, limits: { rpm: 3, tpm: 1000, concurrency: 2 } }
  - { id: b, tenant: acme, key_sha256: d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa }
";

#[test]
fn keys_arrive_in_any_of_the_three_headers() {
    let g = gov(BASE);
    for h in [
        ("authorization", "Bearer test"),
        ("x-api-key", "test"),
        ("api-key", "test"),
    ] {
        let c = g.auth(&headers(&[h])).unwrap().unwrap();
        assert_eq!(c.subject, "a");
        assert_eq!(c.tenant.name, "acme");
    }
    let e = g.auth(&headers(&[("authorization", "Bearer nope-nope-nope")]));
    assert!(matches!(e, Err(GatewayError::Unauthorized(m)) if m.contains("nop****nope")));
    assert!(matches!(
        g.auth(&HeaderMap::new()),
        Err(GatewayError::Unauthorized(_))
    ));
}

#[test]
fn model_access_follows_the_tenant_and_key_globs() {
    let g = gov(BASE);
    let c = g.auth(&headers(&[("x-api-key", "test")])).unwrap().unwrap();
    assert!(c.allows_model("gpt-4o"));
    assert!(!c.allows_model("claude-3"));
}

#[test]
fn no_auth_section_is_an_error_unless_explicit() {
    let raw: RawConfig = serde_yaml::from_str("models: {}").unwrap();
    let p = Governance::compile(&raw, &prometheus::Registry::new())
        .err()
        .unwrap();
    assert!(p[0].1.contains("auth: none"), "{p:?}");
    let g = gov("auth: none");
    assert!(g.auth(&HeaderMap::new()).unwrap().is_none());
}

#[test]
fn a_refused_request_takes_nothing() {
    let g = gov(BASE);
    let c = g.auth(&headers(&[("x-api-key", "test")])).unwrap().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(admit(&g, Some(&c), "gpt-4o", 10, Some(10)).unwrap());
    }
    // Concurrency 2: the third waits for a slot...
    let e = admit(&g, Some(&c), "gpt-4o", 10, Some(10)).err().unwrap();
    assert!(
        matches!(
            e,
            GatewayError::RateLimited {
                kind: "requests",
                ..
            }
        ),
        "{e}"
    );
    for mut t in held.drain(..) {
        g.settle(Some(&c), &mut t, None, None);
    }
    // ...and did not use up the key's rpm of 3 or the tenant's 5.
    let t = admit(&g, Some(&c), "gpt-4o", 10, Some(10)).unwrap();
    assert_eq!(t.requests.unwrap().remaining, 0);
    drop(t);
    let e = admit(&g, Some(&c), "gpt-4o", 10, Some(10)).err().unwrap();
    assert!(e.to_string().contains("3 requests per minute"), "{e}");
    // Key b shares only the tenant's minute: 5 - 3 = 2 left.
    let b = g
        .auth(&headers(&[("x-api-key", "other")]))
        .unwrap()
        .unwrap();
    let t = admit(&g, Some(&b), "gpt-4o", 10, Some(10)).unwrap();
    assert_eq!(t.requests.unwrap().remaining, 1);
    drop(t);
    admit(&g, Some(&b), "gpt-4o", 10, Some(10)).unwrap();
    let e = admit(&g, Some(&b), "gpt-4o", 10, Some(10)).err().unwrap();
    assert!(e.to_string().contains("tenant"), "{e}");
}

#[test]
fn tokens_are_reserved_then_settled() {
    let g = gov(BASE);
    let c = g.auth(&headers(&[("x-api-key", "test")])).unwrap().unwrap();
    let mut t = admit(&g, Some(&c), "gpt-4o", 100, Some(500)).unwrap();
    assert_eq!(t.tokens.unwrap().remaining, 400);
    // Too much for what is left while the first is reserved.
    let e = admit(&g, Some(&c), "gpt-4o", 100, Some(500)).err().unwrap();
    assert!(matches!(
        e,
        GatewayError::RateLimited { kind: "tokens", .. }
    ));
    let usage = sluice_providers::Usage {
        prompt_tokens: 100,
        completion_tokens: 20,
        ..Default::default()
    };
    g.settle(Some(&c), &mut t, Some(&usage), None);
    let t2 = admit(&g, Some(&c), "gpt-4o", 100, Some(500)).unwrap();
    assert_eq!(t2.tokens.unwrap().remaining, 1000 - 120 - 600);
    // A request larger than the whole limit says so.
    let e = admit(&g, Some(&c), "gpt-4o", 100, Some(5000))
        .err()
        .unwrap();
    assert!(e.to_string().contains("more than the limit"), "{e}");
}

#[test]
fn concurrent_admissions_never_overspend_a_hard_budget() {
    // 1 USD at 1 USD per million output tokens: 10 requests of 100k.
    let g = Arc::new(gov(
        "
auth: { mode: keys }
prices: { m: { input: 0, output: 1 } }
tenants:
  t: { budget: { usd: 1.0, period: total, alert_at: [0.5, 1.0] } }
keys:
  - { id: a, tenant: t, key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 }
",
    ));
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let c = g.auth(&headers(&[("x-api-key", "test")])).unwrap().unwrap();
                for _ in 0..10 {
                    if let Ok(mut t) = admit(&g, Some(&c), "m", 0, Some(100_000)) {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let u = sluice_providers::Usage {
                            completion_tokens: 100_000,
                            ..Default::default()
                        };
                        g.settle(Some(&c), &mut t, Some(&u), None);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 10);
    let c = g.auth(&headers(&[("x-api-key", "test")])).unwrap().unwrap();
    let v = c.tenant.state.spend.view(0);
    assert_eq!(v.spent, 1_000_000_000);
    assert_eq!(v.reserved, 0);
    let e = admit(&g, Some(&c), "m", 0, Some(1)).err().unwrap();
    assert!(matches!(e, GatewayError::BudgetExceeded(_)));
    assert_eq!(e.status(), 402);
}
