//! Governance's background work: delivering budget alerts, refreshing JWKS.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::Governance;

pub struct GovernanceService {
    pub governance: Arc<Governance>,
    pub connector: Arc<Connector>,
}

#[async_trait]
impl BackgroundService for GovernanceService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let gov = &self.governance;
        let alerts = gov.alerts.clone();
        let jwks = async {
            let Some(jwt) = &gov.jwt else {
                return std::future::pending().await;
            };
            let _ = jwt.connector.set(self.connector.clone());
            loop {
                if let Err(e) = jwt.reload().await {
                    tracing::warn!("JWKS refresh failed (keeping the keys we have): {e}");
                }
                tokio::time::sleep(jwt.refresh).await;
            }
        };
        tokio::select! {
            _ = alerts.deliver(self.connector.clone()) => {}
            _ = jwks => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Loads what the memory store kept of earlier admin changes, and the usage
/// log (replaying its write-ahead file and rebuilding spend from it).
pub fn restore(
    gov: &Governance,
    usage_log: Option<&crate::config::schema::UsageLogSection>,
) -> Result<(), String> {
    if let Some(path) = gov.state_file() {
        match std::fs::read(path) {
            Ok(data) => {
                let overlay = serde_json::from_slice(&data)
                    .map_err(|e| format!("store.state {path}: {e}"))?;
                gov.dir
                    .load(overlay)
                    .map_err(|e| format!("store.state {path}: {e}"))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("store.state {path}: {e}")),
        }
    }
    if let Some(cfg) = usage_log {
        let (log, records) = super::usage::UsageLog::open(cfg)?;
        gov.attach_usage(log, &records);
    }
    Ok(())
}
