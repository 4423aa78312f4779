//! The compiled, immutable runtime view of the config. A request takes one
//! `Arc<Snapshot>` at its start, so a reload never mixes old and new.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::errors::GatewayError;
use crate::metrics::RouteMetrics;
use crate::upstream::Provider;

pub struct Snapshot {
    pub max_request_body: usize,
    pub max_stream_event: usize,
    pub access_log: bool,
    pub models: HashMap<String, Arc<Model>>,
    /// `GET /v1/models` body, built once.
    pub models_json: Bytes,
    /// Public model names, sorted, for error messages.
    pub model_names: String,
    /// Models that cannot serve, with the reason (shown by /readyz).
    pub unavailable: BTreeMap<String, String>,
}

pub struct Model {
    pub name: String,
    pub targets: Vec<Target>,
    /// Body filters; an empty chain keeps same-format traffic undecoded.
    pub filters: sluice_filters::Chain,
    next: AtomicUsize,
}

pub struct Target {
    pub provider: Arc<Provider>,
    pub upstream_model: String,
    /// `upstream_model` as a JSON string literal, spliced into bodies.
    pub upstream_model_json: Bytes,
    pub metrics: RouteMetrics,
}

impl Model {
    pub fn new(name: String, targets: Vec<Target>, filters: sluice_filters::Chain) -> Model {
        Model {
            name,
            targets,
            filters,
            next: AtomicUsize::new(0),
        }
    }

    /// Round-robin over the targets that can serve.
    pub fn pick(&self) -> Result<(usize, &Target), GatewayError> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .map(|i| (i, &self.targets[i]))
            .find(|(_, t)| t.provider.unavailable.is_none())
            .ok_or_else(|| {
                let reasons: Vec<String> = self
                    .targets
                    .iter()
                    .filter_map(|t| t.provider.unavailable.clone())
                    .collect();
                GatewayError::ModelUnavailable(format!(
                    "Model '{}' is unavailable: {}",
                    self.name,
                    reasons.join("; ")
                ))
            })
    }
}
