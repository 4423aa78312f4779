//! Sluice's own request pipeline for the LLM endpoints, driven from
//! `request_filter` so bodies of any size work (see DESIGN: the 64 KiB
//! retry-buffer trap). One file per stage.

mod admit;
mod answer;
mod attempt;
mod dispatch;
mod head;
pub mod passthrough;
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
    /// Tries at the upstream so far (retries and fallbacks included).
    pub attempts: u32,
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
    /// Set when a passthrough route serves the request.
    pub pass: Option<passthrough::PassCtx>,
    /// Set when governance is on: the response header and usage record carry it.
    pub request_id: Option<String>,
    pub caller: Option<crate::govern::Caller>,
    /// The request's reservation, settled once by `record`.
    pub ticket: Option<crate::govern::admit::Ticket>,
    /// The usage log's write-ahead generation holding this request's note.
    pub wal_gen: Option<u64>,
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
            attempts: 0,
            stream: false,
            status: 0,
            error: None,
            upstream_head_at: None,
            upstream_sent_at: None,
            first_body_at: None,
            bytes_out: 0,
            mid_stream_error: false,
            filters: None,
            pass: None,
            request_id: None,
            caller: None,
            ticket: None,
            wal_gen: None,
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
    session.set_keepalive(Some(crate::conn::IDLE.as_secs()));
    let admitted = match admit::caller(session, ctx).await {
        Ok(()) => passthrough::claim(session, ctx).await,
        Err(e) => Err(e),
    };
    match admitted {
        // Pingora's own proxy flow takes it from here.
        Ok(true) => return Ok(false),
        Ok(false) => {}
        Err(err) => {
            ctx.inbound = Endpoint::format_of_path(session.req_header().uri.path());
            ctx.status = err.status();
            respond::error(session, &err, ctx).await;
            ctx.error = Some(err);
            return Ok(true);
        }
    }
    // The disconnect watch reads one byte when the request is done; with
    // pipelining on, a byte of the client's next request is kept for it
    // instead of being lost (or refused as data after the body).
    session.as_downstream_mut().set_pipelining_enabled(true);
    let result = serve(gw, session, ctx).await;
    let Err(err) = result else {
        return Ok(true);
    };
    let started = session.response_written().is_some();
    if !started && !matches!(err, GatewayError::ClientGone) {
        ctx.status = err.status();
        respond::error(session, &err, ctx).await;
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
    let (endpoint, deployment) = match read::azure(&req.method, req.uri.path()) {
        Some(found) => {
            let (ep, name) = found?;
            (ep, Some(name))
        }
        None => (read::endpoint(&req.method, req.uri.path())?, None),
    };
    ctx.endpoint = Some(endpoint);
    let snapshot = ctx.snapshot.clone();
    match endpoint {
        Endpoint::Models => {
            ctx.status = 200;
            let body = match &ctx.caller {
                Some(c) => models_for(&snapshot, c),
                None => snapshot.models_json.clone(),
            };
            return respond::json(session, 200, body, ctx).await;
        }
        Endpoint::KeyInfo => {
            let Some(c) = &ctx.caller else {
                return Err(GatewayError::NotFound(
                    "authentication is off: there is no key to describe".into(),
                ));
            };
            ctx.status = 200;
            let body = snapshot.governance.key_info(c).await;
            return respond::json(session, 200, body, ctx).await;
        }
        _ => {}
    }
    let mut body = read::body(session, snapshot.max_request_body).await?;
    if let Some(name) = &deployment {
        body = read::with_model(body, name);
    }
    let (mut probe, decoded) = match decode_first(&snapshot, endpoint, &body) {
        Some((p, req)) => (p, Some(req)),
        None if snapshot.filters_chat => (probe::probe_texts(endpoint, &body)?, None),
        None => (probe::probe(endpoint, &body)?, None),
    };
    ctx.stream = probe.stream;
    let mut input = translate::Input::new(endpoint, body.clone(), &probe);
    if let Some(req) = decoded {
        input.decoded(req);
    }
    let requested = probe.model.clone();
    admit::model_allowed(ctx, &requested)?;
    let name = route(&snapshot, session, ctx, &requested, &mut input)?;
    let model =
        snapshot
            .models
            .get(name.as_ref())
            .cloned()
            .ok_or_else(|| GatewayError::UnknownModel {
                model: name.to_string(),
                available: snapshot.model_names.clone(),
            })?;
    ctx.model = Some(model.clone());
    if endpoint == Endpoint::CountTokens
        && !model
            .targets
            .iter()
            .all(|t| t.provider.format == Format::Anthropic)
    {
        ctx.status = 200;
        let out = translate::count_tokens(&body)?;
        return respond::json(session, 200, out, ctx).await;
    }
    admit::reserve(ctx, &model, body.len(), probe.max_tokens, probe.choices).await?;
    let texts = probe.texts.take();
    attempt::run(gw, session, ctx, &mut input, texts.as_ref(), model).await
}

/// A chat request decoded before routing, when it would be decoded anyway,
/// with the probe read off it; `None` sends the request through the probe
/// (and any error is the probe's, as on every other route).
fn decode_first<'a>(
    snapshot: &Snapshot,
    endpoint: Endpoint,
    body: &'a [u8],
) -> Option<(probe::Probe<'a>, sluice_providers::ChatRequest)> {
    let first = match endpoint {
        Endpoint::ChatCompletions => {
            snapshot.decodes_chat
                || (snapshot.filters_chat && streams(body))
                || translated(snapshot, endpoint, body)
        }
        Endpoint::Messages => {
            snapshot.decodes_chat || snapshot.filters_chat || translated(snapshot, endpoint, body)
        }
        _ => false,
    };
    if !first {
        return None;
    }
    let req = endpoint.format().codec().decode_request(body).ok()?;
    let probe = probe::from_decoded(body, &req)?;
    Some((probe, req))
}

/// Whether the model the request names (read by a scan that does not
/// parse) has no target in the client's format, so the request will be
/// decoded to be translated whatever happens. A wrong guess costs a pass,
/// never a different answer.
fn translated(snapshot: &Snapshot, endpoint: Endpoint, body: &[u8]) -> bool {
    let inbound = endpoint.format();
    if !snapshot.translates_from.contains(&inbound) {
        return false;
    }
    let Some(at) = sluice_providers::json_scan::top_level_value(body, "model") else {
        return false;
    };
    let Some(rest) = body[at..].strip_prefix(b"\"") else {
        return false;
    };
    // A name with escapes is left to the probe.
    let Some(end) = memchr::memchr2(b'"', b'\\', rest).filter(|&k| rest[k] == b'"') else {
        return false;
    };
    std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|name| snapshot.models.get(name))
        .is_some_and(|m| m.translates_from(inbound))
}

/// Whether the request asks for a stream, by a scan that does not parse:
/// filters decode streams (the encoder may have to ask for usage), so they
/// skip the probe. A wrong guess costs a pass, never a different answer.
fn streams(body: &[u8]) -> bool {
    // Most requests that do not stream never name the key: one SIMD search,
    // with a searcher built once (`memmem::find` builds one per call).
    static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"stream\""));
    KEY.find(body).is_some()
        && sluice_providers::json_scan::top_level_value(body, "stream")
            .is_some_and(|at| body[at..].starts_with(b"true"))
}

/// The model that serves the request: the first content rule that matches,
/// else the one asked for.
fn route<'a>(
    snapshot: &'a Snapshot,
    session: &Session,
    ctx: &RequestCtx,
    requested: &'a str,
    input: &mut translate::Input,
) -> Result<std::borrow::Cow<'a, str>, GatewayError> {
    let routes = &snapshot.routes;
    if routes.is_empty() {
        return Ok(requested.into());
    }
    let request = if routes.needs_request() {
        input.chat()?.map(|r| &*r)
    } else {
        None
    };
    let count = |r: &sluice_providers::ChatRequest| {
        sluice_filters::tokens::Counter::new(requested, 4.0).prompt(r)
    };
    let picked = routes.evaluate(&crate::routing::rules::RouteInput {
        model: requested,
        headers: &session.req_header().headers,
        request,
        count_tokens: &count,
        caller: ctx.caller.as_ref(),
    });
    Ok(picked.map_or(requested.into(), |m| m.to_string().into()))
}

/// `GET /v1/models` as the caller sees it: only the models it may use.
fn models_for(snapshot: &Snapshot, caller: &crate::govern::Caller) -> bytes::Bytes {
    crate::snapshot::models_json(snapshot.models.keys().filter(|n| caller.allows_model(n)))
}
