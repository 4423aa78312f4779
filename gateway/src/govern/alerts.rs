//! Budget alerts: each threshold crossing is queued once (the spend lock
//! decides) and POSTed as JSON to the budget's webhook, retried with
//! exponential backoff. Retries carry the same `x-sluice-alert-id`, so a
//! receiver can drop a repeat of a delivery it already acted on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use serde::Serialize;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub alert_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `key` or `tenant`.
    pub scope: &'static str,
    pub id: String,
    pub threshold: f64,
    pub budget_usd: f64,
    pub spent_usd: f64,
    pub period: crate::config::schema::Period,
    pub ts_ms: u64,
    #[serde(skip)]
    pub webhook: String,
}

pub struct Alerts {
    tx: mpsc::UnboundedSender<Alert>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Alert>>>,
    pub sent: prometheus::IntCounter,
    pub failed: prometheus::IntCounter,
}

const ATTEMPTS: u32 = 6;

impl Alerts {
    pub fn new(sent: prometheus::IntCounter, failed: prometheus::IntCounter) -> Alerts {
        let (tx, rx) = mpsc::unbounded_channel();
        Alerts {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            sent,
            failed,
        }
    }

    pub fn fire(&self, alert: Alert) {
        tracing::warn!(
            scope = alert.scope,
            id = alert.id.as_str(),
            threshold = alert.threshold,
            spent_usd = alert.spent_usd,
            "budget threshold crossed"
        );
        let _ = self.tx.send(alert);
    }

    /// Delivers queued alerts until the process ends; runs once.
    pub async fn deliver(self: Arc<Self>, connector: Arc<Connector>) {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut rx) = rx else { return };
        while let Some(alert) = rx.recv().await {
            let me = self.clone();
            let connector = connector.clone();
            tokio::spawn(async move { me.send(&connector, alert).await });
        }
    }

    async fn send(&self, connector: &Connector, alert: Alert) {
        let body = Bytes::from(serde_json::to_vec(&alert).unwrap_or_default());
        let headers = [
            ("content-type", "application/json".to_string()),
            ("x-sluice-alert-id", alert.alert_id.clone()),
        ];
        let mut wait = Duration::from_millis(250);
        for attempt in 1..=ATTEMPTS {
            let r = super::client::call(
                connector,
                "POST",
                &alert.webhook,
                &headers,
                body.clone(),
                Duration::from_secs(10),
            )
            .await;
            match r {
                Ok((status, _)) if (200..300).contains(&status) => {
                    self.sent.inc();
                    return;
                }
                Ok((status, _)) => {
                    tracing::warn!(
                        attempt,
                        status,
                        webhook = alert.webhook.as_str(),
                        "alert webhook refused"
                    )
                }
                Err(e) => tracing::warn!(attempt, "alert webhook failed: {e}"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
        self.failed.inc();
    }
}
