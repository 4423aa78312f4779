//! A compiled provider: where it lives, how to authenticate, and a cached
//! Pingora `HttpPeer` (DNS re-resolved on expiry, stale entry kept on error).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::{HeaderName, HeaderValue};
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;

use crate::peer::PooledPeer;

use sluice_providers::{Format, Operation};

use crate::config::schema::ProviderKind;
use crate::errors::GatewayError;
use crate::pipeline::Endpoint;

const DNS_TTL: Duration = Duration::from_secs(30);

/// Parsed `base_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash, e.g. `/v1`.
    pub path: String,
    /// Value for the `Host` header.
    pub authority: String,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<BaseUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("'{url}' must start with http:// or https://"));
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("'{url}' has no valid host"));
        }
        if path.contains(['?', '#']) {
            return Err(format!("'{url}' must not contain a query or fragment"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or(format!("'{url}': bad IPv6 host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("'{url}': bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(format!("'{url}': bad authority")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("'{url}': bad port"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        Ok(BaseUrl {
            tls,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
            authority: authority.to_string(),
        })
    }
}

/// Which client headers go upstream.
#[derive(Debug, Clone)]
pub enum HeaderMatch {
    Exact(String),
    Prefix(String),
}

impl HeaderMatch {
    pub fn parse(s: &str) -> HeaderMatch {
        let s = s.to_ascii_lowercase();
        match s.strip_suffix('*') {
            Some(p) => HeaderMatch::Prefix(p.to_string()),
            None => HeaderMatch::Exact(s),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            HeaderMatch::Exact(e) => e == name,
            HeaderMatch::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// Client headers that are never forwarded: credentials and hop-by-hop.
pub fn never_forward(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "proxy-authorization"
            | "x-api-key"
            | "api-key"
            | "x-goog-api-key"
            | "cookie"
            | "host"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "te"
            | "upgrade"
            | "expect"
    )
}

/// Everything `compile` decides about a provider.
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    pub base: BaseUrl,
    /// `base.authority` as the `Host` header, built once.
    pub host_header: HeaderValue,
    /// `name` as the `x-sluice-provider` header (`None` if it cannot be one).
    pub name_header: Option<HeaderValue>,
    /// The wire format the upstream speaks.
    pub format: Format,
    /// Credential headers, sent the provider's way; empty for keyless upstreams.
    pub auth: Vec<(HeaderName, HeaderValue)>,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    pub default_max_tokens: u32,
    pub strict: bool,
    pub quirks: Quirks,
    /// Why requests cannot be served (e.g. a missing key variable).
    pub unavailable: Option<String>,
    pub timeouts: RuntimeTimeouts,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub forward: Vec<HeaderMatch>,
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub interval: Duration,
    /// Full path on the upstream (base path included).
    pub path: String,
    pub expect_status: u16,
    pub timeout: Duration,
}

/// A provider at run time: its spec plus the cached peer.
pub struct Provider {
    spec: ProviderSpec,
    peer: ArcSwapOption<CachedPeer>,
}

impl std::ops::Deref for Provider {
    type Target = ProviderSpec;
    fn deref(&self) -> &ProviderSpec {
        &self.spec
    }
}

/// OpenAI-compatible deviations, applied to the encoded request body.
#[derive(Debug, Clone, Default)]
pub struct Quirks {
    pub drop_params: Vec<String>,
    pub rename_params: Vec<(String, String)>,
    pub stream_usage: bool,
}

impl Quirks {
    pub fn edits_body(&self) -> bool {
        !self.drop_params.is_empty() || !self.rename_params.is_empty()
    }

    pub fn apply(&self, body: Vec<u8>) -> Vec<u8> {
        if !self.edits_body() {
            return body;
        }
        let Ok(serde_json::Value::Object(mut o)) = serde_json::from_slice(&body) else {
            return body;
        };
        for d in &self.drop_params {
            o.remove(d);
        }
        for (from, to) in &self.rename_params {
            if let Some(v) = o.remove(from) {
                o.insert(to.clone(), v);
            }
        }
        serde_json::to_vec(&o).unwrap_or(body)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RuntimeTimeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
}

struct CachedPeer {
    peer: Arc<PooledPeer>,
    /// `None` for IP-literal hosts: never re-resolved.
    expires: Option<Instant>,
}

impl Provider {
    pub fn new(spec: ProviderSpec) -> Provider {
        let provider = Provider {
            spec,
            peer: ArcSwapOption::empty(),
        };
        if let Ok(ip) = provider.base.host.parse::<IpAddr>() {
            let peer = provider.build_peer(SocketAddr::new(ip, provider.base.port));
            provider.peer.store(Some(Arc::new(CachedPeer {
                peer,
                expires: None,
            })));
        }
        provider
    }

    fn build_peer(&self, addr: SocketAddr) -> Arc<PooledPeer> {
        let mut peer = HttpPeer::new(addr, self.base.tls, self.base.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeouts.connect);
        o.total_connection_timeout = Some(self.timeouts.connect);
        // h2 only where TLS lets the upstream offer it; plaintext stays h1.
        o.alpn = if self.base.tls { ALPN::H2H1 } else { ALPN::H1 };
        o.verify_cert = true;
        o.verify_hostname = true;
        o.ca = self.ca.clone();
        o.tcp_keepalive = None;
        // Pingora pools by address and SNI only; without this, a provider with
        // a private CA could reuse a connection another provider verified
        // differently (or not at all). One pool per provider.
        peer.group_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.name.hash(&mut h);
            h.finish()
        };
        Arc::new(PooledPeer(peer))
    }

    /// The peer to connect to, resolving DNS at most once per TTL.
    pub async fn peer(&self) -> Result<Arc<PooledPeer>, GatewayError> {
        let cached = self.peer.load_full();
        if let Some(c) = &cached {
            if c.expires.is_none_or(|t| Instant::now() < t) {
                return Ok(c.peer.clone());
            }
        }
        let lookup = tokio::net::lookup_host((self.base.host.as_str(), self.base.port)).await;
        match lookup.map(|mut it| it.next()) {
            Ok(Some(addr)) => {
                let peer = self.build_peer(addr);
                self.peer.store(Some(Arc::new(CachedPeer {
                    peer: peer.clone(),
                    expires: Some(Instant::now() + DNS_TTL),
                })));
                Ok(peer)
            }
            failed => {
                // Keep serving the last good address while DNS is failing.
                if let Some(c) = cached {
                    return Ok(c.peer.clone());
                }
                let cause = match failed {
                    Err(e) => format!("cannot resolve '{}': {e}", self.base.host),
                    Ok(_) => format!("no address for host '{}'", self.base.host),
                };
                Err(self.connect_error(cause))
            }
        }
    }

    pub fn connect_error(&self, cause: String) -> GatewayError {
        GatewayError::UpstreamConnect {
            provider: self.name.clone(),
            cause,
        }
    }

    /// Path and query of `endpoint` for `model`, below the base URL.
    pub fn path(&self, endpoint: Endpoint, model: &str, stream: bool) -> String {
        let base = &self.base.path;
        if self.kind == ProviderKind::Azure {
            let op = match endpoint {
                Endpoint::Embeddings => "embeddings",
                Endpoint::Completions => "completions",
                _ => "chat/completions",
            };
            let v = self.api_version.as_deref().unwrap_or("");
            return format!("{base}/openai/deployments/{model}/{op}?api-version={v}");
        }
        let codec = self.format.codec();
        match endpoint {
            Endpoint::Completions => joined(base, "/completions"),
            Endpoint::Models | Endpoint::KeyInfo => joined(base, "/models"),
            Endpoint::CountTokens => joined(base, "/v1/messages/count_tokens"),
            Endpoint::Embeddings => {
                joined(base, &codec.path(Operation::Embed { batch: true }, model))
            }
            Endpoint::ChatCompletions | Endpoint::Messages => {
                joined(base, &codec.path(Operation::Chat { stream }, model))
            }
        }
    }

    pub fn forwards(&self, name: &str) -> bool {
        !never_forward(name) && self.forward.iter().any(|m| m.matches(name))
    }
}

/// `base` then `tail`: on every request, where `format!` cost about 900
/// instructions.
fn joined(base: &str, tail: &str) -> String {
    let mut s = String::with_capacity(base.len() + tail.len());
    s.push_str(base);
    s.push_str(tail);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let b = BaseUrl::parse("https://api.openai.com/v1/").unwrap();
        assert_eq!(
            (b.tls, b.host.as_str(), b.port, b.path.as_str()),
            (true, "api.openai.com", 443, "/v1")
        );
        let b = BaseUrl::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(
            (b.port, b.path.as_str(), b.authority.as_str()),
            (8000, "", "127.0.0.1:8000")
        );
        let b = BaseUrl::parse("http://[::1]:9/v1").unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 9));
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("http://u:p@x/").is_err());
        assert!(BaseUrl::parse("http://x:notaport/").is_err());
        assert!(BaseUrl::parse("http://x/v1?key=1").is_err());
    }

    #[test]
    fn credentials_never_forward() {
        let m = [HeaderMatch::parse("*")];
        assert!(m[0].matches("authorization"));
        assert!(never_forward("authorization"));
        assert!(HeaderMatch::parse("x-mock-*").matches("x-mock-fault"));
        assert!(!HeaderMatch::parse("x-trace").matches("x-trace-id"));
    }
}
