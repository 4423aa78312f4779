//! The thin `ProxyHttp`: every method delegates to the pipeline.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::metrics::Metrics;
use crate::pipeline::{self, RequestCtx};
use crate::snapshot::Snapshot;

pub struct Gateway {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub connector: Connector,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.snapshot.load_full(), &self.metrics.in_flight)
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        pipeline::handle(self, session, ctx).await
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        // Every request is answered in `request_filter`; passthrough routes come later.
        Err(pingora::Error::explain(
            pingora::ErrorType::HTTPStatus(404),
            "no passthrough route",
        ))
    }

    async fn logging(
        &self,
        session: &mut Session,
        _e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        let req = session.req_header();
        pipeline::record::record(&self.metrics, req.method.as_str(), req.uri.path(), ctx);
    }

    fn suppress_error_log(
        &self,
        _session: &Session,
        _ctx: &RequestCtx,
        _error: &pingora::Error,
    ) -> bool {
        // Errors are logged once, by `record`.
        true
    }
}
