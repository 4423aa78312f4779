//! Sluice's own request pipeline for the LLM endpoints, driven from
//! `request_filter` so bodies of any size work (see DESIGN: the 64 KiB
//! retry-buffer trap). One file per stage.

mod dispatch;
mod probe;
mod read;
pub mod record;
mod relay;
mod respond;
mod transcode;
mod translate;

use std::sync::Arc;
use std::time::Instant;

use pingora::proxy::Session;
use sluice_providers::Format;

use crate::errors::GatewayError;
use crate::proxy::Gateway;
use crate::snapshot::{Model, Snapshot};
pub use read::Endpoint;

/// Everything one request accumulates; `record` reads it exactly once.
pub struct RequestCtx {
    pub snapshot: Arc<Snapshot>,
    pub start: Instant,
    pub endpoint: Option<Endpoint>,
    /// The client's API format: errors are rendered in it.
    pub inbound: Format,
    pub model: Option<Arc<Model>>,
    pub target: Option<usize>,
    pub stream: bool,
    pub status: u16,
    pub error: Option<GatewayError>,
    pub upstream_head_at: Option<Instant>,
    pub upstream_sent_at: Option<Instant>,
    pub first_body_at: Option<Instant>,
    pub bytes_out: usize,
    pub mid_stream_error: bool,
    /// This request's filter state (token counts, detections, timings).
    pub filters: Option<sluice_filters::ChainRun>,
    _in_flight: InFlight,
}

/// Counts a request as in flight until its context is dropped (after `logging`).
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl RequestCtx {
    pub fn new(snapshot: Arc<Snapshot>, in_flight: &prometheus::IntGauge) -> RequestCtx {
        in_flight.inc();
        RequestCtx {
            snapshot,
            start: Instant::now(),
            endpoint: None,
            inbound: Format::OpenAi,
            model: None,
            target: None,
            stream: false,
            status: 0,
            error: None,
            upstream_head_at: None,
            upstream_sent_at: None,
            first_body_at: None,
            bytes_out: 0,
            mid_stream_error: false,
            filters: None,
            _in_flight: InFlight(in_flight.clone()),
        }
    }
}

/// Serves one request completely. `Err` only when the response was started
/// and cannot be completed: Pingora then drops the connection.
pub async fn handle(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<bool> {
    session.set_keepalive(Some(60));
    let result = serve(gw, session, ctx).await;
    let Err(err) = result else {
        return Ok(true);
    };
    let started = session.response_written().is_some();
    if !started && !matches!(err, GatewayError::ClientGone) {
        ctx.status = err.status();
        respond::error(session, &err, ctx.inbound).await;
    }
    let cut_short = started && !ctx.mid_stream_error && !matches!(err, GatewayError::ClientGone);
    if matches!(err, GatewayError::ClientGone) {
        ctx.status = 499;
    }
    let kind = err.kind();
    ctx.error = Some(err);
    if cut_short {
        return Err(pingora::Error::explain(
            pingora::ErrorType::ConnectionClosed,
            kind,
        ));
    }
    Ok(true)
}

async fn serve(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let req = session.req_header();
    // From the path alone, so 404 and 405 answers are in the client's format too.
    ctx.inbound = Endpoint::format_of_path(req.uri.path());
    let endpoint = read::endpoint(&req.method, req.uri.path())?;
    ctx.endpoint = Some(endpoint);
    let snapshot = ctx.snapshot.clone();
    if endpoint == Endpoint::Models {
        ctx.status = 200;
        return respond::json(session, 200, snapshot.models_json.clone()).await;
    }
    let body = read::body(session, snapshot.max_request_body).await?;
    let probe = probe::probe(endpoint, &body)?;
    let model = snapshot
        .models
        .get(probe.model.as_ref())
        .cloned()
        .ok_or_else(|| GatewayError::UnknownModel {
            model: probe.model.to_string(),
            available: snapshot.model_names.clone(),
        })?;
    ctx.stream = probe.stream;
    ctx.model = Some(model.clone());
    let (index, target) = model.pick()?;
    ctx.target = Some(index);
    if endpoint == Endpoint::CountTokens && target.provider.format != Format::Anthropic {
        ctx.status = 200;
        let out = translate::count_tokens(&body)?;
        return respond::json(session, 200, out).await;
    }
    let mut run = (!model.filters.is_empty()).then(|| model.filters.start(&target.upstream_model));
    let prepared = translate::prepare(endpoint, &body, &probe, target, run.as_mut());
    ctx.filters = run;
    let prepared = prepared?;
    drop(probe);
    let provider = &target.provider;
    let deadline = tokio::time::Instant::from_std(ctx.start + provider.timeouts.total);

    let peer = provider.peer().await?;
    let head = dispatch::request_header(
        session.req_header(),
        provider,
        endpoint,
        &prepared.path,
        prepared.body.len(),
        ctx.stream,
    )?;
    ctx.upstream_sent_at = Some(Instant::now());
    let opened = tokio::select! {
        r = tokio::time::timeout_at(deadline, dispatch::open(gw, &peer, provider, head, prepared.body)) => r,
        _ = relay::client_gone(session) => return Err(GatewayError::ClientGone),
    };
    let mut up = opened.map_err(|_| total_timeout(provider))??;
    ctx.upstream_head_at = Some(Instant::now());
    let inbound = ctx.inbound;
    let mut is_sse = ctx.stream;
    let relayed = if prepared.plan == translate::Plan::Passthrough {
        let resp = relay::response_header(&up, provider)?;
        ctx.status = resp.status.as_u16();
        is_sse = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        session
            .write_response_header(resp, false)
            .await
            .map_err(|_| GatewayError::ClientGone)?;
        tokio::time::timeout_at(
            deadline,
            relay::body(session, &mut up, provider, ctx, is_sse, inbound),
        )
        .await
    } else {
        let relay =
            transcode::Relay {
                provider,
                plan: prepared.plan,
                inbound,
                dropped: prepared.dropped.as_deref(),
                model: &model.name,
                drain: model.filters.token_count.as_ref().is_some_and(|t| {
                    t.on_disconnect == sluice_filters::config::OnDisconnect::Drain
                }),
            };
        tokio::time::timeout_at(deadline, relay.run(session, &mut up, ctx)).await
    };
    let result = match relayed {
        Ok(r) => r,
        Err(_) => {
            let err = total_timeout(provider);
            if is_sse && session.response_written().is_some() {
                let _ = session
                    .write_response_body(Some(err.sse_event(inbound)), true)
                    .await;
                ctx.mid_stream_error = true;
            }
            Err(err)
        }
    };
    if result.is_ok() {
        dispatch::release(gw, up, &peer).await;
    } else {
        up.shutdown().await;
    }
    result
}

fn total_timeout(provider: &crate::upstream::Provider) -> GatewayError {
    GatewayError::UpstreamTimeout {
        provider: provider.name.clone(),
        cause: format!("total timeout of {:?} exceeded", provider.timeouts.total),
    }
}
