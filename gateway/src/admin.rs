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
    pub governance: Arc<crate::govern::Governance>,
}

/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_BODY => {
                body.extend_from_slice(&chunk)
            }
            Ok(Some(_)) => {
                return Err(json_reply(
                    413,
                    serde_json::json!({"error": {"message": "body larger than 1 MiB", "type": "invalid_request_error"}}),
                ))
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(json_reply(
                    400,
                    serde_json::json!({"error": {"message": format!("cannot read the body: {e}"), "type": "invalid_request_error"}}),
                ))
            }
        }
    }
}

fn json_reply(status: u16, v: serde_json::Value) -> Response<Vec<u8>> {
    reply(status, "application/json", v.to_string().into_bytes())
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
    /// Keys, tenants and usage: only with `Authorization: Bearer <admin_token>`.
    async fn governance_api(&self, session: &mut ServerSession, path: &str) -> Response<Vec<u8>> {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let req = session.req_header();
        if !self.governance.is_admin(&req.headers) {
            return json_reply(
                401,
                serde_json::json!({"error": {"message": "admin API: send 'Authorization: Bearer <auth.admin_token>' (no admin_token configured disables it)", "type": "authentication_error"}}),
            );
        }
        let method = req.method.as_str().to_string();
        let query = req.uri.query().unwrap_or("").to_string();
        match self.governance.admin(&method, path, &query, &body).await {
            Some((status, v)) => json_reply(status, v),
            None => json_reply(
                404,
                serde_json::json!({"error": {"message": "not found", "type": "invalid_request_error"}}),
            ),
        }
    }

    fn readyz(&self) -> Response<Vec<u8>> {
        let snap = self.snapshot.load();
        let available = snap.models.len() - snap.unavailable.len();
        let status = if available > 0 {
            "ready"
        } else {
            "no model available"
        };
        let store = self.governance.shared.as_ref().map(|s| {
            serde_json::json!({"kind": "redis", "up": s.is_up(), "fail": format!("{:?}", s.fail).to_lowercase()})
        });
        // A store that is away makes this instance unready only if it then refuses.
        let store_ok = self
            .governance
            .shared
            .as_ref()
            .is_none_or(|s| s.is_up() || s.fail == crate::config::schema::FailMode::Open);
        let status = if !store_ok {
            "shared store unreachable"
        } else {
            status
        };
        let body = serde_json::json!({
            "status": status,
            "models_available": available,
            "unavailable_models": snap.unavailable,
            "store": store.unwrap_or_else(|| serde_json::json!({"kind": "memory"})),
        });
        reply(
            if available > 0 && store_ok { 200 } else { 503 },
            "application/json",
            body.to_string().into_bytes(),
        )
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        if path.starts_with("/admin/") && path != "/admin/upstreams" {
            return self.governance_api(session, &path).await;
        }
        let _ = session.drain_request_body().await;
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
