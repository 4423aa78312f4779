//! Governance's background work: delivering budget alerts, refreshing
//! JWKS, and with a shared store: sending settlements, watching the
//! connection, and loading key changes made on other instances.

use std::sync::Arc;
use std::time::Duration;

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
        let store = async {
            let Some(shared) = &gov.shared else {
                return std::future::pending().await;
            };
            let flush = shared.flush_loop(|scope, id, b, fraction, spent| {
                gov.alert(scope, id, b, fraction, spent)
            });
            let watch = async {
                loop {
                    // A PING each time: an outage is noticed even by an
                    // instance living on its leases.
                    if shared.connect().await {
                        sync_overlay(gov).await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            };
            tokio::join!(flush, watch);
        };
        tokio::select! {
            _ = alerts.deliver(self.connector.clone()) => {}
            _ = jwks => {}
            _ = store => {}
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
    if let Some(shared) = &gov.shared {
        // The first load, before serving; its connection belongs to this
        // short-lived runtime, so it is dropped and the service reconnects.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            if shared.connect().await {
                sync_overlay(gov).await;
            } else {
                tracing::warn!("shared store unreachable at start: serving with the config's keys");
            }
        });
        shared.disconnect();
    }
    if let Some(cfg) = usage_log {
        let (log, records) = super::usage::UsageLog::open(cfg)?;
        gov.attach_usage(log, &records);
    }
    Ok(())
}

/// Loads the key and tenant overlay from the shared store if it changed.
pub async fn sync_overlay(gov: &Governance) {
    let Some(shared) = &gov.shared else { return };
    match shared.load_overlay().await {
        Ok(Some((version, overlay))) => match gov.dir.load(overlay) {
            Ok(()) => shared
                .overlay_version
                .store(version, std::sync::atomic::Ordering::Release),
            Err(e) => tracing::error!("keys from the shared store do not compile: {e}"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot load keys from the shared store: {e}"),
    }
}
