//! JWT callers: HS256 with a shared secret, RS256 and ES256 with keys from a
//! JWKS (a file or a URL), refreshed on a timer and when a token names a key
//! id not yet known (key rotation). Issuer, audience, expiry and not-before
//! are checked; the tenant and roles come from configured claims.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pingora::connectors::http::Connector;

use crate::config::schema::JwtSection;

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub tenant: String,
    pub subject: String,
    pub roles: Vec<String>,
}

struct Keys {
    by_kid: HashMap<String, (Algorithm, Arc<DecodingKey>)>,
    /// Keys without a `kid`, tried in turn.
    anonymous: Vec<(Algorithm, Arc<DecodingKey>)>,
}

pub struct Jwt {
    jwks: Option<String>,
    secret: Option<Arc<DecodingKey>>,
    issuer: Option<String>,
    audience: Option<String>,
    tenant_claim: String,
    roles_claim: String,
    pub refresh: Duration,
    leeway: u64,
    keys: ArcSwap<Keys>,
    /// One reload at a time, and not more often than `MIN_RELOAD`.
    reload: tokio::sync::Mutex<Option<Instant>>,
    pub connector: OnceLock<Arc<Connector>>,
}

const MIN_RELOAD: Duration = Duration::from_secs(2);

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Parses a JWKS document into decoding keys (RSA and P-256 only).
fn parse_jwks(data: &[u8]) -> Result<Keys, String> {
    let set: JwkSet = serde_json::from_slice(data).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Keys {
        by_kid: HashMap::new(),
        anonymous: Vec::new(),
    };
    for jwk in &set.keys {
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            // Keys for other algorithms are not ours to accept.
            _ => continue,
        };
        let key = Arc::new(DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key: {e}"))?);
        match &jwk.common.key_id {
            Some(kid) => {
                keys.by_kid.insert(kid.clone(), (alg, key));
            }
            None => keys.anonymous.push((alg, key)),
        }
    }
    Ok(keys)
}

impl Jwt {
    pub fn new(s: &JwtSection) -> Result<Jwt, String> {
        let secret = match &s.secret {
            Some(r) => Some(Arc::new(DecodingKey::from_secret(
                r.resolve()
                    .map_err(|v| format!("secret: environment variable {v} is not set"))?
                    .expose()
                    .as_bytes(),
            ))),
            None => None,
        };
        if secret.is_none() && s.jwks.is_none() {
            return Err("give `jwks` (a file or URL), `secret` (HS256), or both".into());
        }
        // A file is read now, so a bad one fails at start; a URL is fetched
        // by the background task once the server runs.
        let keys = match s.jwks.as_deref().filter(|j| !is_url(j)) {
            Some(path) => {
                parse_jwks(&std::fs::read(path).map_err(|e| format!("jwks {path}: {e}"))?)
                    .map_err(|e| format!("jwks {path}: {e}"))?
            }
            None => Keys {
                by_kid: HashMap::new(),
                anonymous: Vec::new(),
            },
        };
        Ok(Jwt {
            jwks: s.jwks.clone(),
            secret,
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            tenant_claim: s.tenant_claim.clone(),
            roles_claim: s.roles_claim.clone(),
            refresh: s.refresh.0.max(Duration::from_secs(1)),
            leeway: s.leeway.0.as_secs(),
            keys: ArcSwap::from_pointee(keys),
            reload: tokio::sync::Mutex::new(None),
            connector: OnceLock::new(),
        })
    }

    /// Whether a presented credential is shaped like a JWT.
    pub fn looks_like(token: &str) -> bool {
        token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
    }

    /// Fetches or reads the JWKS again; at most once per `MIN_RELOAD`.
    pub async fn reload(&self) -> Result<(), String> {
        let Some(src) = &self.jwks else {
            return Ok(());
        };
        let mut last = self.reload.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_RELOAD) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let data = if is_url(src) {
            let Some(c) = self.connector.get() else {
                return Err("no connector yet".into());
            };
            let (status, body) = super::client::call(
                c,
                "GET",
                src,
                &[("accept", "application/json".into())],
                bytes::Bytes::new(),
                Duration::from_secs(5),
            )
            .await?;
            if status != 200 {
                return Err(format!("jwks {src}: status {status}"));
            }
            body.to_vec()
        } else {
            std::fs::read(src).map_err(|e| format!("jwks {src}: {e}"))?
        };
        let keys = parse_jwks(&data).map_err(|e| format!("jwks {src}: {e}"))?;
        self.keys.store(Arc::new(keys));
        Ok(())
    }

    /// Checks a token; an unknown `kid` reloads the JWKS once first.
    pub async fn verify(&self, token: &str) -> Result<Claims, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let candidates = match self.candidates(header.alg, header.kid.as_deref()) {
            Some(c) => c,
            None => {
                if let Err(e) = self.reload().await {
                    tracing::warn!("JWKS reload failed: {e}");
                }
                self.candidates(header.alg, header.kid.as_deref())
                    .ok_or_else(|| match &header.kid {
                        Some(k) => format!("unknown signing key '{k}'"),
                        None => format!("no key for algorithm {:?}", header.alg),
                    })?
            }
        };
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        // A configured issuer or audience must be present, not only match.
        let mut required = vec!["exp"];
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let mut last = String::from("no key");
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, &key, &v) {
                Ok(data) => return self.claims(&data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    fn candidates(&self, alg: Algorithm, kid: Option<&str>) -> Option<Vec<Arc<DecodingKey>>> {
        if alg == Algorithm::HS256 {
            return self.secret.clone().map(|s| vec![s]);
        }
        if !matches!(alg, Algorithm::RS256 | Algorithm::ES256) {
            return None;
        }
        let keys = self.keys.load();
        let found: Vec<Arc<DecodingKey>> = match kid {
            Some(k) => keys
                .by_kid
                .get(k)
                .filter(|(a, _)| *a == alg)
                .map(|(_, key)| vec![key.clone()])
                .unwrap_or_default(),
            None => keys
                .anonymous
                .iter()
                .filter(|(a, _)| *a == alg)
                .map(|(_, key)| key.clone())
                .collect(),
        };
        (!found.is_empty()).then_some(found)
    }

    fn claims(&self, c: &serde_json::Value) -> Result<Claims, String> {
        let tenant = c
            .get(&self.tenant_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("the token has no '{}' claim", self.tenant_claim))?;
        let roles = match c.get(&self.roles_claim) {
            Some(serde_json::Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Claims {
            tenant: tenant.to_string(),
            subject: c
                .get("sub")
                .and_then(|v| v.as_str())
                .unwrap_or("jwt")
                .to_string(),
            roles,
        })
    }

    pub fn uses_url(&self) -> bool {
        self.jwks.as_deref().is_some_and(is_url)
    }
}
