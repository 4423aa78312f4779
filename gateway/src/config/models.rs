//! `models:` → pools: targets with their health and balancer, retry policy,
//! fallbacks and filter chain.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::compile::Problems;
use super::schema::{Balance, BreakerSection, ModelSection, ProviderKind, RawConfig};
use crate::lookup::Lookup;
use crate::metrics::Metrics;
use crate::routing::balance::{Balancer, Policy};
use crate::routing::health::{BreakerConfig, Health};
use crate::routing::retry::RetryPolicy;
use crate::routing::MAX_TARGETS;
use crate::snapshot::{Model, PassRoute, Target};
use crate::upstream::{Provider, RuntimeTimeouts};

pub(super) fn compile_models(
    raw: &RawConfig,
    providers: &HashMap<&str, Arc<Provider>>,
    metrics: &Metrics,
    count_tokens: bool,
    p: &mut Problems<'_>,
) -> (Lookup<String, Arc<Model>>, BTreeMap<String, String>) {
    let known_providers = raw.providers.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut models = Lookup::default();
    let mut unavailable = BTreeMap::new();
    for (name, section) in &raw.models {
        let path = format!("models.{name}");
        if section.targets.is_empty() {
            p.add(
                format!("{path}.targets"),
                "a model needs at least one target",
            );
        }
        if section.targets.len() > MAX_TARGETS {
            p.add(
                format!("{path}.targets"),
                format!("at most {MAX_TARGETS} targets per model"),
            );
        }
        check_policies(raw, name, section, &path, p);
        let breaker = breaker_config(&section.breaker);
        let mut targets = Vec::new();
        for (i, t) in section.targets.iter().enumerate() {
            let tpath = format!("{path}.targets[{i}]");
            if t.weight == 0 {
                p.add(format!("{tpath}.weight"), "weight must be at least 1");
            }
            if t.max_in_flight == Some(0) {
                p.add(format!("{tpath}.max_in_flight"), "must be at least 1");
            }
            let Some(provider) = providers.get(t.provider.as_str()) else {
                if !raw.providers.contains_key(&t.provider) {
                    p.add(
                        format!("{tpath}.provider"),
                        format!(
                            "unknown provider \"{}\" (known: {known_providers})",
                            t.provider
                        ),
                    );
                }
                continue;
            };
            let upstream_model = t.model.clone().unwrap_or_else(|| name.clone());
            let in_url = matches!(provider.kind, ProviderKind::Gemini | ProviderKind::Azure);
            if in_url
                && !upstream_model
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                p.add(
                    format!("{tpath}.model"),
                    format!("\"{upstream_model}\" goes into the URL; use letters, digits, '-', '.' and '_' only"),
                );
            }
            let json = serde_json::to_string(&upstream_model).unwrap_or_default();
            let label = format!("{}/{upstream_model}", provider.name);
            let o = &section.timeouts;
            let pt = provider.timeouts;
            targets.push(Target {
                provider: provider.clone(),
                upstream_model_json: Bytes::from(json),
                weight: t.weight.max(1),
                max_in_flight: t.max_in_flight,
                timeouts: RuntimeTimeouts {
                    connect: o.connect.map_or(pt.connect, |d| d.0),
                    first_byte: o.first_byte.map_or(pt.first_byte, |d| d.0),
                    idle: o.idle.map_or(pt.idle, |d| d.0),
                    total: o.total.map_or(pt.total, |d| d.0),
                },
                health: Arc::new(Health::new(breaker)),
                metrics: metrics.route(name, &provider.name),
                counters: metrics.routing.target(name, &label),
                label_header: http::HeaderValue::from_str(&label).ok(),
                label,
                upstream_model,
            });
        }
        if !targets.is_empty() && targets.iter().all(|t| t.provider.unavailable.is_some()) {
            let reasons: Vec<String> = targets
                .iter()
                .filter_map(|t| t.provider.unavailable.clone())
                .collect();
            unavailable.insert(name.clone(), reasons.join("; "));
        }
        let (fpath, mut cfg) = match &section.filters {
            Some(f) => (format!("{path}.filters"), raw.filters.merge(f)),
            None => ("filters".to_string(), raw.filters.clone()),
        };
        let mut usage_only = false;
        if count_tokens && cfg.token_count.is_none() {
            // Limits, budgets and usage records need every request's usage.
            usage_only = sluice_filters::Chain::compile(&cfg).is_ok_and(|c| c.is_empty());
            cfg.token_count = Some(sluice_filters::config::TokenCountConfig::default());
        }
        let filters = match sluice_filters::Chain::compile(&cfg) {
            Ok(c) => c,
            Err(e) => {
                p.add(fpath, e);
                sluice_filters::Chain::default()
            }
        };
        let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
        let policy = policy(section.balance);
        let r = section.retry;
        let model = Model {
            name: name.clone(),
            balancer: Balancer::new(policy, &weights),
            targets,
            filters,
            retry: RetryPolicy {
                attempts: r.attempts.max(1),
                backoff: r.backoff.0,
                max_backoff: r.max_backoff.0,
                deadline: r.deadline.0,
            },
            fallback: section.fallback.clone(),
            fallback_context_length: section.fallback_on.context_length.clone(),
            fallback_content_policy: section.fallback_on.content_policy.clone(),
            usage_only,
        };
        models.insert(name.clone(), Arc::new(model));
    }
    (models, unavailable)
}

fn breaker_config(b: &BreakerSection) -> BreakerConfig {
    BreakerConfig {
        enabled: b.enabled,
        failures: b.failures.max(1),
        error_rate: b.error_rate,
        min_requests: b.min_requests.max(1),
        window: b.window.0,
        cooldown: b.cooldown.0,
    }
}

fn policy(b: Balance) -> Policy {
    match b {
        Balance::RoundRobin => Policy::RoundRobin,
        Balance::Weighted => Policy::Weighted,
        Balance::LeastConnections => Policy::LeastConnections,
        Balance::Latency => Policy::Latency,
        Balance::Random => Policy::Random,
    }
}

/// `passthrough:` entries → prefix routes over provider pools.
pub(super) fn compile_passthrough(
    raw: &RawConfig,
    providers: &HashMap<&str, Arc<Provider>>,
    metrics: &Metrics,
    p: &mut Problems<'_>,
) -> Vec<Arc<PassRoute>> {
    let mut out = Vec::new();
    for (i, s) in raw.passthrough.iter().enumerate() {
        let path = format!("passthrough[{i}]");
        let prefix = &s.prefix;
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 3 {
            p.add(
                format!("{path}.prefix"),
                "a prefix like /openai/: starting and ending with '/'",
            );
        }
        if ["/v1/", "/v1beta/"]
            .iter()
            .any(|api| api.starts_with(prefix.as_str()) || prefix.starts_with(api))
        {
            p.add(
                format!("{path}.prefix"),
                "must not overlap Sluice's own API paths (/v1/, /v1beta/)",
            );
        }
        if raw.passthrough[..i].iter().any(|o| o.prefix == *prefix) {
            p.add(
                format!("{path}.prefix"),
                "another passthrough route has this prefix",
            );
        }
        if s.targets.is_empty() || s.targets.len() > MAX_TARGETS {
            p.add(
                format!("{path}.targets"),
                format!("between 1 and {MAX_TARGETS} targets"),
            );
        }
        check_breaker(&s.breaker, &path, p);
        let breaker = breaker_config(&s.breaker);
        let mut targets = Vec::new();
        for (j, t) in s.targets.iter().enumerate() {
            let Some(provider) = providers.get(t.provider.as_str()) else {
                if !raw.providers.contains_key(&t.provider) {
                    p.add(
                        format!("{path}.targets[{j}].provider"),
                        format!("unknown provider \"{}\"", t.provider),
                    );
                }
                continue;
            };
            targets.push(Target {
                provider: provider.clone(),
                upstream_model: String::new(),
                upstream_model_json: Bytes::new(),
                label: provider.name.clone(),
                label_header: provider.name_header.clone(),
                weight: t.weight.max(1),
                max_in_flight: None,
                timeouts: provider.timeouts,
                health: Arc::new(Health::new(breaker)),
                metrics: metrics.route(prefix, &provider.name),
                counters: metrics.routing.target(prefix, &provider.name),
            });
        }
        let weights: Vec<u32> = targets.iter().map(|t| t.weight).collect();
        let pool = Model {
            name: prefix.clone(),
            balancer: Balancer::new(policy(s.balance), &weights),
            targets,
            filters: sluice_filters::Chain::default(),
            // Pingora retries a failed connect (see the proxy hooks); nothing else.
            retry: RetryPolicy {
                attempts: 3,
                backoff: std::time::Duration::ZERO,
                max_backoff: std::time::Duration::ZERO,
                deadline: std::time::Duration::from_secs(30),
            },
            fallback: Vec::new(),
            fallback_context_length: None,
            fallback_content_policy: None,
            usage_only: false,
        };
        out.push(Arc::new(PassRoute {
            prefix: prefix.clone(),
            pool: Arc::new(pool),
            max_body: s.max_body.map(|b| b.0),
        }));
    }
    out
}

fn check_breaker(b: &BreakerSection, path: &str, p: &mut Problems<'_>) {
    if !(0.0..=1.0).contains(&b.error_rate) || b.error_rate == 0.0 {
        p.add(format!("{path}.breaker.error_rate"), "must be in (0, 1]");
    }
    if b.window.0.is_zero() {
        p.add(format!("{path}.breaker.window"), "must be longer than zero");
    }
}

fn check_policies(raw: &RawConfig, name: &str, s: &ModelSection, path: &str, p: &mut Problems<'_>) {
    let known = |m: &str| raw.models.contains_key(m);
    for (i, f) in s.fallback.iter().enumerate() {
        if !known(f) {
            p.add(
                format!("{path}.fallback[{i}]"),
                format!("unknown model \"{f}\""),
            );
        } else if f == name {
            p.add(
                format!("{path}.fallback[{i}]"),
                "a model cannot fall back to itself",
            );
        }
    }
    for (field, m) in [
        ("context_length", &s.fallback_on.context_length),
        ("content_policy", &s.fallback_on.content_policy),
    ] {
        if let Some(m) = m {
            if !known(m) {
                p.add(
                    format!("{path}.fallback_on.{field}"),
                    format!("unknown model \"{m}\""),
                );
            }
        }
    }
    check_breaker(&s.breaker, path, p);
    if s.retry.attempts == 0 {
        p.add(
            format!("{path}.retry.attempts"),
            "at least 1 (the first attempt)",
        );
    }
}
