//! Admin listener: `/healthz`, `/readyz`, `/metrics`, `/admin/upstreams`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

pub struct Admin {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, len.into());
    resp
}

impl Admin {
    fn readyz(&self) -> Response<Vec<u8>> {
        let snap = self.snapshot.load();
        let available = snap.models.len() - snap.unavailable.len();
        let status = if available > 0 {
            "ready"
        } else {
            "no model available"
        };
        let body = serde_json::json!({
            "status": status,
            "models_available": available,
            "unavailable_models": snap.unavailable,
        });
        reply(
            if available > 0 { 200 } else { 503 },
            "application/json",
            body.to_string().into_bytes(),
        )
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let _ = session.drain_request_body().await;
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => reply(200, "application/json", b"{\"status\":\"ok\"}".to_vec()),
            "/readyz" => self.readyz(),
            "/metrics" => {
                self.metrics.routing.refresh(&self.snapshot.load());
                reply(200, "text/plain; version=0.0.4", self.metrics.render())
            }
            "/admin/upstreams" => reply(
                200,
                "application/json",
                crate::routing::stats::upstreams_json(&self.snapshot.load()).into_bytes(),
            ),
            _ => reply(
                404,
                "application/json",
                b"{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}"
                    .to_vec(),
            ),
        }
    }
}
