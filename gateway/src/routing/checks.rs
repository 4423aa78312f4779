//! Active health checks: a background task probes each provider that asks
//! for it (`health_check:`) and feeds the verdict to the health of every
//! target on that provider, in model pools and passthrough routes alike.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::health::now_ms;
use crate::snapshot::Snapshot;
use crate::upstream::{HealthCheck, Provider};

pub struct HealthChecks {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub connector: Connector,
}

/// How often the task looks for checks that are due.
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut due: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
            let snapshot = self.snapshot.load_full();
            for provider in providers(&snapshot) {
                let Some(hc) = &provider.health_check else {
                    continue;
                };
                let now = Instant::now();
                if due.get(&provider.name).is_some_and(|t| now < *t) {
                    continue;
                }
                due.insert(provider.name.clone(), now + hc.interval);
                let passed = tokio::time::timeout(hc.timeout, self.probe(&provider, hc))
                    .await
                    .unwrap_or_else(|_| Err("timed out".into()));
                if let Err(why) = &passed {
                    tracing::warn!(provider = %provider.name, "health check failed: {why}");
                }
                apply(&snapshot, &provider, passed.is_ok());
            }
        }
    }
}

/// Every provider that some pool uses, once.
fn providers(snapshot: &Snapshot) -> Vec<Arc<Provider>> {
    let mut out: Vec<Arc<Provider>> = Vec::new();
    for t in snapshot.pools().flat_map(|(_, m)| m.targets.iter()) {
        if !out.iter().any(|p| Arc::ptr_eq(p, &t.provider)) {
            out.push(t.provider.clone());
        }
    }
    out
}

fn apply(snapshot: &Snapshot, provider: &Arc<Provider>, passed: bool) {
    let now = now_ms();
    for t in snapshot.pools().flat_map(|(_, m)| m.targets.iter()) {
        if Arc::ptr_eq(&t.provider, provider) {
            if passed {
                t.health.check_passed();
            } else if t.health.check_failed(now) {
                t.counters.ejections.inc();
            }
        }
    }
}

impl HealthChecks {
    async fn probe(&self, provider: &Provider, hc: &HealthCheck) -> Result<(), String> {
        let peer = provider.peer().await.map_err(|e| e.to_string())?;
        let (mut up, _) = self
            .connector
            .get_http_session(peer.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        let mut req =
            RequestHeader::build("GET", hc.path.as_bytes(), Some(4)).map_err(|e| e.to_string())?;
        let _ = req.insert_header(http::header::HOST, provider.host_header.clone());
        let _ = req.insert_header(http::header::USER_AGENT, "sluice-health-check");
        for (name, value) in &provider.auth {
            let _ = req.insert_header(name.clone(), value.clone());
        }
        up.write_request_header(Box::new(req))
            .await
            .map_err(|e| e.to_string())?;
        up.finish_request_body().await.map_err(|e| e.to_string())?;
        up.read_response_header().await.map_err(|e| e.to_string())?;
        let status = up.response_header().map_or(0, |h| h.status.as_u16());
        while let Ok(Some(_)) = up.read_response_body().await {}
        up.shutdown().await;
        if status == hc.expect_status {
            Ok(())
        } else {
            Err(format!("status {status}, expected {}", hc.expect_status))
        }
    }
}
