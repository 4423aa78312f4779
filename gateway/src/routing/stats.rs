//! Routing metrics: attempts, retries, fallbacks, ejections, and each
//! target's breaker state, in-flight count and latency estimate (gauges
//! refreshed when `/metrics` is scraped, from the health atomics).

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::health::now_ms;
use crate::snapshot::Snapshot;

pub struct RoutingMetrics {
    selected: IntCounterVec,
    attempts: IntCounterVec,
    ejections: IntCounterVec,
    retries: IntCounterVec,
    fallbacks: IntCounterVec,
    breaker: IntGaugeVec,
    in_flight: IntGaugeVec,
    latency: GaugeVec,
}

/// Handles for one target, resolved when the config is compiled.
pub struct TargetMetrics {
    pub selected: IntCounter,
    pub ok: IntCounter,
    pub failed: IntCounter,
    pub ejections: IntCounter,
}

impl RoutingMetrics {
    pub fn register(registry: &Registry) -> Result<RoutingMetrics, prometheus::Error> {
        let target = ["model", "target"];
        let m = RoutingMetrics {
            selected: IntCounterVec::new(
                Opts::new(
                    "sluice_target_selected_total",
                    "Attempts sent to each target",
                ),
                &target,
            )?,
            attempts: IntCounterVec::new(
                Opts::new(
                    "sluice_upstream_attempts_total",
                    "Upstream attempts by outcome (failed: connect error, timeout, 408, 429 or 5xx)",
                ),
                &["model", "target", "outcome"],
            )?,
            ejections: IntCounterVec::new(
                Opts::new(
                    "sluice_target_ejections_total",
                    "Times a target's breaker opened",
                ),
                &target,
            )?,
            retries: IntCounterVec::new(
                Opts::new("sluice_retries_total", "Attempts after the first, by model"),
                &["model"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new(
                    "sluice_fallbacks_total",
                    "Requests moved to a fallback model",
                ),
                &["from", "to"],
            )?,
            breaker: IntGaugeVec::new(
                Opts::new(
                    "sluice_target_breaker_state",
                    "Breaker state per target: 0 closed, 1 open, 2 half-open",
                ),
                &target,
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new("sluice_target_in_flight", "Requests in flight per target"),
                &target,
            )?,
            latency: GaugeVec::new(
                Opts::new(
                    "sluice_target_latency_seconds",
                    "Time-to-first-byte estimate per target (EWMA, as the latency policy sees it)",
                ),
                &target,
            )?,
        };
        registry.register(Box::new(m.selected.clone()))?;
        registry.register(Box::new(m.attempts.clone()))?;
        registry.register(Box::new(m.ejections.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.fallbacks.clone()))?;
        registry.register(Box::new(m.breaker.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        Ok(m)
    }

    pub fn target(&self, model: &str, target: &str) -> TargetMetrics {
        let l = [model, target];
        TargetMetrics {
            selected: self.selected.with_label_values(&l),
            ok: self.attempts.with_label_values(&[model, target, "ok"]),
            failed: self.attempts.with_label_values(&[model, target, "failed"]),
            ejections: self.ejections.with_label_values(&l),
        }
    }

    pub fn retry(&self, model: &str) {
        self.retries.with_label_values(&[model]).inc();
    }

    pub fn fallback(&self, from: &str, to: &str) {
        self.fallbacks.with_label_values(&[from, to]).inc();
    }

    /// Copies every target's health into the gauges.
    pub fn refresh(&self, snapshot: &Snapshot) {
        let now = now_ms();
        for (name, model) in snapshot.pools() {
            for t in &model.targets {
                let l = [name, t.label.as_str()];
                let h = &t.health;
                self.breaker.with_label_values(&l).set(h.state() as i64);
                self.in_flight
                    .with_label_values(&l)
                    .set(i64::from(h.in_flight()));
                self.latency
                    .with_label_values(&l)
                    .set(h.latency_us(now) / 1e6);
            }
        }
    }
}

/// `GET /admin/upstreams`: each model's pool and each target's health.
pub fn upstreams_json(snapshot: &Snapshot) -> String {
    let now = now_ms();
    let mut names: Vec<&String> = snapshot.models.keys().collect();
    names.sort();
    let models: Vec<serde_json::Value> = names
        .into_iter()
        .map(|name| {
            let m = &snapshot.models[name];
            let targets: Vec<serde_json::Value> =
                m.targets.iter().map(|t| target_json(t, now)).collect();
            serde_json::json!({
                "model": name,
                "balance": m.balancer.policy().as_str(),
                "fallback": m.fallback,
                "targets": targets,
            })
        })
        .collect();
    let passthrough: Vec<serde_json::Value> = snapshot
        .passthrough
        .iter()
        .map(|r| {
            let targets: Vec<serde_json::Value> =
                r.pool.targets.iter().map(|t| target_json(t, now)).collect();
            serde_json::json!({
                "prefix": r.prefix,
                "balance": r.pool.balancer.policy().as_str(),
                "targets": targets,
            })
        })
        .collect();
    serde_json::json!({ "models": models, "passthrough": passthrough }).to_string()
}

fn target_json(t: &crate::snapshot::Target, now: u64) -> serde_json::Value {
    let h = &t.health;
    let (ok, failed) = h.window_counts(now);
    serde_json::json!({
        "target": t.label,
        "provider": t.provider.name,
        "model": t.upstream_model,
        "weight": t.weight,
        "max_in_flight": t.max_in_flight,
        "available": t.provider.unavailable.is_none(),
        "unavailable_reason": t.provider.unavailable,
        "breaker": h.state().as_str(),
        "in_flight": h.in_flight(),
        "latency_ms": h.latency_us(now) / 1e3,
        "consecutive_failures": h.consecutive_failures(),
        "window": {"ok": ok, "failed": failed},
        "ejections": h.ejections(),
        "cooling_ms": h.cooling(now),
    })
}
