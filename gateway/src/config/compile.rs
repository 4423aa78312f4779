//! `RawConfig` → `Snapshot`: resolves references and secrets, validates
//! addresses and files, and collects every problem instead of stopping at the first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::locate::locate;
use super::schema::{ProviderKind, ProviderSection, RawConfig};
use super::{ConfigError, Problem, Source};
use crate::metrics::Metrics;
use crate::routing::rules::Routes;
use crate::snapshot::Snapshot;
use crate::upstream::{BaseUrl, HeaderMatch, Provider, ProviderSpec, Quirks, RuntimeTimeouts};
use sluice_providers::Format;

pub(super) struct Problems<'a> {
    src: &'a Source,
    list: Vec<Problem>,
}

impl Problems<'_> {
    pub(super) fn add(&mut self, path: String, message: impl Into<String>) {
        let loc = locate(&self.src.text, &path);
        self.list.push(Problem {
            path,
            message: message.into(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
        });
    }
}

/// `mocks` gives the loopback address of each `kind: mock` provider's server.
pub fn compile(
    raw: &RawConfig,
    src: &Source,
    mocks: &HashMap<String, SocketAddr>,
    metrics: &Metrics,
) -> Result<Snapshot, ConfigError> {
    let mut p = Problems {
        src,
        list: Vec::new(),
    };
    check_server(raw, &mut p);

    let mut providers: HashMap<&str, Arc<Provider>> = HashMap::new();
    for (name, section) in &raw.providers {
        if let Some(provider) = compile_provider(name, section, mocks, &mut p) {
            providers.insert(name.as_str(), Arc::new(provider));
        }
    }

    let governance = match crate::govern::Governance::compile(raw, &metrics.registry) {
        Ok(g) => Some(g),
        Err(problems) => {
            for (path, message) in problems {
                p.add(path, message);
            }
            None
        }
    };
    let count_tokens = governance.as_ref().is_some_and(|g| g.counts_tokens);
    let (models, unavailable) =
        super::models::compile_models(raw, &providers, metrics, count_tokens, &mut p);
    let passthrough = super::models::compile_passthrough(raw, &providers, metrics, &mut p);
    let names: Vec<&str> = raw.models.keys().map(String::as_str).collect();
    let (routes, problems) = Routes::compile(&raw.routes, &names);
    for (path, message) in problems {
        p.add(path, message);
    }

    let Some(governance) = governance.filter(|_| p.list.is_empty()) else {
        return Err(ConfigError {
            file: src.name.clone(),
            problems: p.list,
        });
    };
    let mut names: Vec<&String> = raw.models.keys().collect();
    names.sort();
    let filters_chat = !models.is_empty()
        && models
            .values()
            .all(|m| !m.filters.is_empty() && !m.usage_only);
    let translates_from = [Format::OpenAi, Format::Anthropic]
        .into_iter()
        .filter(|&f| models.values().any(|m| m.translates_from(f)))
        .collect();
    Ok(Snapshot {
        decodes_chat: routes.needs_request(),
        filters_chat,
        translates_from,
        max_request_body: raw.server.max_request_body.0,
        max_stream_event: raw.server.max_stream_event.0.max(1),
        access_log: raw.server.access_log,
        models,
        routes,
        passthrough,
        models_json: crate::snapshot::models_json(raw.models.keys()),
        model_names: names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        unavailable,
        governance: Arc::new(governance),
    })
}

fn check_server(raw: &RawConfig, p: &mut Problems<'_>) {
    let s = &raw.server;
    for (field, addr) in [("listen", &s.listen), ("admin_listen", &s.admin_listen)] {
        if addr.parse::<SocketAddr>().is_err() {
            p.add(
                format!("server.{field}"),
                format!("\"{addr}\" is not an address like 127.0.0.1:8080"),
            );
        }
    }
    if s.threads == 0 {
        p.add("server.threads".into(), "threads must be at least 1");
    }
    if s.max_request_body.0 == 0 {
        p.add(
            "server.max_request_body".into(),
            "max_request_body must be above 0",
        );
    }
    if let Some(tls) = &s.tls {
        if tls.listen.parse::<SocketAddr>().is_err() {
            p.add(
                "server.tls.listen".into(),
                format!("\"{}\" is not an address like 0.0.0.0:8443", tls.listen),
            );
        }
        for (field, file) in [("cert", &tls.cert), ("key", &tls.key)] {
            if !std::path::Path::new(file).is_file() {
                p.add(
                    format!("server.tls.{field}"),
                    format!("file \"{file}\" does not exist"),
                );
            }
        }
    }
}

/// The official SDKs' base URL per kind, used when `base_url` is left out.
fn default_base(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Openai => Some("https://api.openai.com/v1"),
        ProviderKind::Anthropic => Some("https://api.anthropic.com"),
        ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
        _ => None,
    }
}

fn format_of(kind: ProviderKind) -> Format {
    match kind {
        ProviderKind::Anthropic => Format::Anthropic,
        ProviderKind::Gemini => Format::Gemini,
        _ => Format::OpenAi,
    }
}

fn compile_provider(
    name: &str,
    s: &ProviderSection,
    mocks: &HashMap<String, SocketAddr>,
    p: &mut Problems<'_>,
) -> Option<Provider> {
    let path = format!("providers.{name}");
    let before = p.list.len();
    let base = if s.kind == ProviderKind::Mock {
        if s.base_url.is_some() {
            p.add(
                format!("{path}.base_url"),
                "a mock provider is served by Sluice itself; remove base_url",
            );
        }
        let addr = mocks
            .get(name)
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9)));
        BaseUrl::parse(&format!("http://{addr}/v1")).ok()
    } else {
        match s
            .base_url
            .as_deref()
            .or(default_base(s.kind))
            .map(BaseUrl::parse)
        {
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                p.add(format!("{path}.base_url"), e);
                None
            }
            None => {
                p.add(
                    format!("{path}.base_url"),
                    "base_url is required, e.g. https://api.openai.com/v1",
                );
                None
            }
        }
    };
    if s.mock.is_some() && s.kind != ProviderKind::Mock {
        p.add(
            format!("{path}.mock"),
            "only a provider of kind 'mock' takes mock settings",
        );
    }
    let needs_key = !matches!(s.kind, ProviderKind::OpenaiCompatible | ProviderKind::Mock);
    if needs_key && s.api_key.is_none() {
        p.add(
            format!("{path}.api_key"),
            format!("kind '{}' needs api_key: ${{ENV_VAR}}", s.kind.as_str()),
        );
    }
    if s.kind == ProviderKind::Azure && s.api_version.is_none() {
        p.add(
            format!("{path}.api_version"),
            "kind 'azure' needs api_version, e.g. 2024-10-21",
        );
    }
    if s.api_version.is_some() && !matches!(s.kind, ProviderKind::Azure | ProviderKind::Anthropic) {
        p.add(
            format!("{path}.api_version"),
            "only kinds 'azure' and 'anthropic' take api_version",
        );
    }
    let quirky = !s.quirks.drop_params.is_empty() || !s.quirks.rename_params.is_empty();
    if quirky && format_of(s.kind) != Format::OpenAi {
        p.add(
            format!("{path}.quirks"),
            "quirks apply to OpenAI-format providers only",
        );
    }
    let mut unavailable = None;
    let mut auth = Vec::new();
    match s.api_key.as_ref().map(|r| r.resolve()) {
        None => {}
        Some(Ok(secret)) => {
            let (name, value) = match s.kind {
                ProviderKind::Anthropic => ("x-api-key", secret.expose().to_string()),
                ProviderKind::Gemini => ("x-goog-api-key", secret.expose().to_string()),
                ProviderKind::Azure => ("api-key", secret.expose().to_string()),
                _ => ("authorization", format!("Bearer {}", secret.expose())),
            };
            match HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    auth.push((HeaderName::from_static(name), v));
                }
                Err(_) => p.add(
                    format!("{path}.api_key"),
                    "the key's value is not a valid header value",
                ),
            }
        }
        Some(Err(var)) => {
            unavailable = Some(format!(
                "environment variable {var} is not set (provider '{name}')"
            ));
        }
    }
    let mut headers = Vec::new();
    if s.kind == ProviderKind::Anthropic {
        let v = s.api_version.as_deref().unwrap_or("2023-06-01");
        match HeaderValue::from_str(v) {
            Ok(v) => headers.push((HeaderName::from_static("anthropic-version"), v)),
            Err(_) => p.add(format!("{path}.api_version"), "not a valid header value"),
        }
    }
    for (k, v) in &s.headers {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(v)) => headers.push((k, v)),
            _ => p.add(
                format!("{path}.headers.{k}"),
                "not a valid header name and value",
            ),
        }
    }
    let ca = match &s.tls {
        Some(t) => match tls_ca(&t.ca_file) {
            Ok(ca) => Some(ca),
            Err(e) => {
                p.add(format!("{path}.tls.ca_file"), e);
                None
            }
        },
        None => None,
    };
    let t = s.timeouts;
    let health_check = s
        .health_check
        .as_ref()
        .and_then(|h| health_check(name, h, base.as_ref(), p));
    let host_header = base
        .as_ref()
        .and_then(|b| match HeaderValue::from_str(&b.authority) {
            Ok(v) => Some(v),
            Err(_) => {
                p.add(
                    format!("{path}.base_url"),
                    "the host cannot be a Host header",
                );
                None
            }
        });
    if p.list.len() > before {
        return None;
    }
    Some(Provider::new(ProviderSpec {
        name: name.to_string(),
        name_header: HeaderValue::from_str(name).ok(),
        kind: s.kind,
        format: format_of(s.kind),
        base: base?,
        host_header: host_header?,
        auth,
        api_version: s.api_version.clone(),
        default_max_tokens: s.default_max_tokens.unwrap_or(4096),
        strict: s.strict,
        quirks: Quirks {
            drop_params: s.quirks.drop_params.clone(),
            rename_params: s
                .quirks
                .rename_params
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect(),
            stream_usage: s.quirks.stream_usage,
        },
        unavailable,
        timeouts: RuntimeTimeouts {
            connect: t.connect.0,
            first_byte: t.first_byte.0,
            idle: t.idle.0,
            total: t.total.0,
        },
        headers,
        forward: s
            .forward_headers
            .iter()
            .map(|h| HeaderMatch::parse(h))
            .collect(),
        ca,
        health_check,
    }))
}

/// Loads PEM CA certificates for per-provider trust; each one is checked to be valid DER.
fn health_check(
    name: &str,
    h: &super::schema::HealthCheckSection,
    base: Option<&BaseUrl>,
    p: &mut Problems<'_>,
) -> Option<crate::upstream::HealthCheck> {
    let path = format!("providers.{name}.health_check");
    if h.interval.0.is_zero() || h.timeout.0.is_zero() {
        p.add(path, "interval and timeout must be longer than zero");
        return None;
    }
    if !h.path.starts_with('/') {
        p.add(format!("{path}.path"), "must start with '/'");
        return None;
    }
    if !(100..=599).contains(&h.expect_status) {
        p.add(
            format!("{path}.expect_status"),
            "an HTTP status, 100 to 599",
        );
        return None;
    }
    Some(crate::upstream::HealthCheck {
        interval: h.interval.0,
        path: format!("{}{}", base.map_or("", |b| b.path.as_str()), h.path),
        expect_status: h.expect_status,
        timeout: h.timeout.0,
    })
}

pub fn tls_ca(file: &str) -> Result<Arc<pingora::protocols::tls::CaType>, String> {
    use pingora::utils::tls::{parse_x509, WrappedX509};
    let data = std::fs::read(file).map_err(|e| format!("cannot read \"{file}\": {e}"))?;
    let mut reader = std::io::Cursor::new(data);
    let mut out = Vec::new();
    for cert in rustls_pemfile::certs(&mut reader) {
        let der = cert.map_err(|e| format!("\"{file}\": {e}"))?;
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("\"{file}\": invalid certificate: {e}"))?;
        out.push(WrappedX509::new(der.to_vec(), parse_x509));
    }
    if out.is_empty() {
        return Err(format!("\"{file}\" holds no PEM certificate"));
    }
    Ok(Arc::from(out.into_boxed_slice()))
}
