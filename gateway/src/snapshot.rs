//! The compiled, immutable runtime view of the config. A request takes one
//! `Arc<Snapshot>` at its start, so a reload never mixes old and new.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::metrics::RouteMetrics;
use crate::routing::balance::Balancer;
use crate::routing::health::Health;
use crate::routing::retry::RetryPolicy;
use crate::routing::rules::Routes;
use crate::routing::stats::TargetMetrics;
use crate::upstream::{Provider, RuntimeTimeouts};

pub struct Snapshot {
    pub max_request_body: usize,
    pub max_stream_event: usize,
    pub access_log: bool,
    pub models: crate::lookup::Lookup<String, Arc<Model>>,
    /// Content rules evaluated before the requested model's pool.
    pub routes: Routes,
    /// Every chat request is decoded whole (content rules read it): the
    /// decode comes first and stands in for the probe's own pass.
    pub decodes_chat: bool,
    /// Every model filters chat requests: the probe reads the texts of a
    /// text-only OpenAI request for filters that only look; the others
    /// (streams, Anthropic's) are decoded first as above.
    pub filters_chat: bool,
    /// Client formats some model has no target in: only their requests are
    /// scanned for a model that translates (see `pipeline::decode_first`).
    pub translates_from: Vec<sluice_providers::Format>,
    /// Untranslated prefix routes, served by Pingora's own proxy flow.
    pub passthrough: Vec<Arc<PassRoute>>,
    /// `GET /v1/models` body, built once.
    pub models_json: Bytes,
    /// Public model names, sorted, for error messages.
    pub model_names: String,
    /// Models that cannot serve, with the reason (shown by /readyz).
    pub unavailable: BTreeMap<String, String>,
    /// Keys, limits, budgets and usage records. Holds live counters: a
    /// reload must carry it over, not rebuild it.
    pub governance: Arc<crate::govern::Governance>,
}

pub struct Model {
    pub name: String,
    pub targets: Vec<Target>,
    /// Body filters; an empty chain keeps same-format traffic undecoded.
    pub filters: sluice_filters::Chain,
    pub balancer: Balancer,
    pub retry: RetryPolicy,
    /// Models tried in order once this pool is exhausted.
    pub fallback: Vec<String>,
    pub fallback_context_length: Option<String>,
    pub fallback_content_policy: Option<String>,
    /// The only filter is the token counter governance needs: a whole
    /// same-format answer then gives its usage without decoding anything.
    pub usage_only: bool,
}

impl Model {
    /// No target takes requests in `client`'s format: every request from
    /// it is translated.
    pub fn translates_from(&self, client: sluice_providers::Format) -> bool {
        !self.targets.is_empty() && self.targets.iter().all(|t| t.provider.format != client)
    }
}

pub struct Target {
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    /// `upstream_model` as a JSON string literal, spliced into bodies.
    pub upstream_model_json: Bytes,
    /// `provider/upstream_model`, as shown in `x-sluice-target` and metrics.
    pub label: String,
    /// `label` as the `x-sluice-target` header (`None` if it cannot be one).
    pub label_header: Option<http::HeaderValue>,
    pub weight: u32,
    pub max_in_flight: Option<u32>,
    /// The provider's timeouts with this model's overrides.
    pub timeouts: RuntimeTimeouts,
    pub health: Arc<Health>,
    pub metrics: RouteMetrics,
    pub counters: TargetMetrics,
}

/// A `passthrough:` route: a path prefix over a pool of providers.
pub struct PassRoute {
    pub prefix: String,
    /// The providers, as targets of a pool (no model: bodies are not read).
    pub pool: Arc<Model>,
    pub max_body: Option<usize>,
}

/// A `GET /v1/models` body listing `names` (sorted here).
pub fn models_json<'a>(names: impl Iterator<Item = &'a String>) -> Bytes {
    let mut names: Vec<&String> = names.collect();
    names.sort();
    let data: Vec<serde_json::Value> = names
        .iter()
        .map(
            |n| serde_json::json!({"id": n, "object": "model", "created": 0, "owned_by": "sluice"}),
        )
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

impl Snapshot {
    /// Every pool with its name: the models, then the passthrough routes.
    pub fn pools(&self) -> impl Iterator<Item = (&str, &Arc<Model>)> {
        self.models.iter().map(|(n, m)| (n.as_str(), m)).chain(
            self.passthrough
                .iter()
                .map(|r| (r.prefix.as_str(), &r.pool)),
        )
    }

    /// The passthrough route whose prefix starts `path`, if any.
    pub fn passthrough_for(&self, path: &str) -> Option<&Arc<PassRoute>> {
        self.passthrough
            .iter()
            .find(|r| path.starts_with(r.prefix.as_str()))
    }
}
