//! Prometheus metrics. Families are registered once; per-target handles are
//! resolved when the config is compiled, so the request path does no label
//! lookups for the common statuses.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream: HistogramVec,
    ttfb: HistogramVec,
    pub in_flight: IntGauge,
    errors: IntCounterVec,
    tokens: IntCounterVec,
    detections: IntCounterVec,
    /// Time spent in each filter, by filter name.
    pub filter_seconds: Vec<(&'static str, Histogram)>,
    /// Requests that never reached a target (bad input, unknown model…),
    /// labelled `-` rather than with a raw client string.
    pub unrouted: RouteMetrics,
    pub routing: crate::routing::stats::RoutingMetrics,
}

/// Statuses with a pre-resolved counter; others fall back to a label lookup.
const COMMON: [u16; 12] = [200, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504];

/// Handles for one (model, provider) pair.
pub struct RouteMetrics {
    model: String,
    provider: String,
    requests: IntCounterVec,
    by_status: Vec<IntCounter>,
    pub duration: Histogram,
    pub upstream: Histogram,
    pub ttfb: Histogram,
    pub prompt_tokens: IntCounter,
    pub completion_tokens: IntCounter,
    pub estimated_prompt_tokens: IntCounter,
}

impl RouteMetrics {
    pub fn count(&self, status: u16) {
        match COMMON.iter().position(|s| *s == status) {
            Some(i) => self.by_status[i].inc(),
            None => self
                .requests
                .with_label_values(&[&self.model, &self.provider, &status.to_string()])
                .inc(),
        }
    }
}

fn route(
    requests: &IntCounterVec,
    duration: &HistogramVec,
    upstream: &HistogramVec,
    ttfb: &HistogramVec,
    tokens: &IntCounterVec,
    model: &str,
    provider: &str,
) -> RouteMetrics {
    let labels = [model, provider];
    RouteMetrics {
        model: model.to_string(),
        provider: provider.to_string(),
        requests: requests.clone(),
        by_status: COMMON
            .iter()
            .map(|s| requests.with_label_values(&[model, provider, &s.to_string()]))
            .collect(),
        duration: duration.with_label_values(&labels),
        upstream: upstream.with_label_values(&labels),
        ttfb: ttfb.with_label_values(&labels),
        prompt_tokens: tokens.with_label_values(&[model, provider, "prompt"]),
        completion_tokens: tokens.with_label_values(&[model, provider, "completion"]),
        estimated_prompt_tokens: tokens.with_label_values(&[model, provider, "prompt_estimated"]),
    }
}

fn latency_buckets() -> Vec<f64> {
    // 100µs .. ~105s
    exponential_buckets(0.0001, 2.0, 21).unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "sluice_requests_total",
                "Requests by public model, provider and status",
            ),
            &["model", "provider", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sluice_request_duration_seconds",
                "Whole request time at the gateway",
            )
            .buckets(latency_buckets()),
            &["model", "provider"],
        )?;
        let upstream = HistogramVec::new(
            HistogramOpts::new(
                "sluice_upstream_duration_seconds",
                "From upstream request sent to upstream response head",
            )
            .buckets(latency_buckets()),
            &["model", "provider"],
        )?;
        let ttfb = HistogramVec::new(
            HistogramOpts::new(
                "sluice_stream_ttfb_seconds",
                "Streams: from request arrival to the first body byte sent to the client",
            )
            .buckets(latency_buckets()),
            &["model", "provider"],
        )?;
        let in_flight = IntGauge::new("sluice_requests_in_flight", "Requests being served")?;
        let errors = IntCounterVec::new(
            Opts::new("sluice_errors_total", "Gateway errors by kind"),
            &["kind"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream.clone()))?;
        registry.register(Box::new(ttfb.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "sluice_tokens_total",
                "Tokens by model, provider and type (prompt, completion: as reported or counted; prompt_estimated: before dispatch)",
            ),
            &["model", "provider", "type"],
        )?;
        let detections = IntCounterVec::new(
            Opts::new(
                "sluice_filter_detections_total",
                "Filter detections by type (PII kinds, prompt_injection)",
            ),
            &["type"],
        )?;
        let filter_hist = HistogramVec::new(
            HistogramOpts::new(
                "sluice_filter_duration_seconds",
                "Time each filter spent on a request (both directions, every stream event)",
            )
            .buckets(exponential_buckets(0.000_001, 2.0, 20).unwrap_or_default()),
            &["filter"],
        )?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(detections.clone()))?;
        registry.register(Box::new(filter_hist.clone()))?;
        let filter_seconds = ["guardrails", "pii", "token_count"]
            .into_iter()
            .map(|f| (f, filter_hist.with_label_values(&[f])))
            .collect();
        let unrouted = route(&requests, &duration, &upstream, &ttfb, &tokens, "-", "-");
        let routing = crate::routing::stats::RoutingMetrics::register(&registry)?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream,
            ttfb,
            in_flight,
            errors,
            tokens,
            detections,
            filter_seconds,
            unrouted,
            routing,
        })
    }

    pub fn route(&self, model: &str, provider: &str) -> RouteMetrics {
        route(
            &self.requests,
            &self.duration,
            &self.upstream,
            &self.ttfb,
            &self.tokens,
            model,
            provider,
        )
    }

    pub fn detection(&self, kind: &str, n: u64) {
        self.detections.with_label_values(&[kind]).inc_by(n);
    }

    pub fn error(&self, kind: &'static str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let enc = prometheus::TextEncoder::new();
        let _ = prometheus::Encoder::encode(&enc, &self.registry.gather(), &mut out);
        out
    }
}
