//! Stage `relay` for the answer the attempts kept: a 2xx body (whole, or
//! streamed), an upstream error response (as is, or translated), and the
//! headers saying what served the request.

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;

use super::attempt::health;
use super::dispatch::{self, upstream_error};
use super::head::{Headers, X_SLUICE_ATTEMPTS, X_SLUICE_TARGET};
use super::relay::{self, client_gone};
use super::transcode;
use super::translate::{self, Plan};
use super::RequestCtx;
use crate::errors::GatewayError;
use crate::peer::PooledPeer;
use crate::proxy::Gateway;
use crate::snapshot::{Model, Target};

pub(super) fn total_timeout(target: &Target) -> GatewayError {
    GatewayError::UpstreamTimeout {
        provider: target.provider.name.clone(),
        cause: format!("total timeout of {:?} exceeded", target.timeouts.total),
    }
}

/// What `read_whole` got: the body, or its first `limit` bytes when longer.
pub(super) enum Read {
    Whole(Bytes),
    Over(Bytes),
}

/// The rest of the upstream body, up to `limit` bytes.
pub(super) async fn read_whole(
    session: &mut Session,
    up: &mut HttpSession,
    target: &Target,
    limit: usize,
) -> Result<Read, GatewayError> {
    up.set_read_timeout(Some(target.timeouts.idle));
    // The usual body arrives in one read: kept as is, copied only if more follow.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    loop {
        let held = first.as_ref().map_or(0, Bytes::len) + buf.len();
        if held >= limit {
            return Ok(Read::Over(first.unwrap_or_else(|| buf.freeze())));
        }
        let chunk = tokio::select! {
            c = up.read_response_body() => c,
            _ = client_gone(session) => return Err(GatewayError::ClientGone),
        };
        match chunk {
            Ok(Some(b)) => match first.take() {
                None if buf.is_empty() => first = Some(b),
                earlier => {
                    if let Some(e) = earlier {
                        buf.extend_from_slice(&e);
                    }
                    buf.extend_from_slice(&b);
                }
            },
            Ok(None) => return Ok(Read::Whole(first.unwrap_or_else(|| buf.freeze()))),
            Err(e) => {
                return Err(upstream_error(
                    &target.provider,
                    &e,
                    "reading the response body",
                ))
            }
        }
    }
}

/// Sends an upstream error response to the client: as is when the formats
/// match, else translated.
pub(super) async fn upstream_error_response(
    session: &mut Session,
    ctx: &mut RequestCtx,
    model: &Model,
    i: usize,
    head: &ResponseHeader,
    body: Bytes,
) -> Result<(), GatewayError> {
    let target = &model.targets[i];
    let provider = &target.provider;
    let status = head.status.as_u16();
    ctx.status = status;
    let (mut resp, body) = if provider.format == ctx.inbound {
        (relay::response_header(head, provider), body)
    } else {
        let out = translate::error_body(provider.format, ctx.inbound, status, &body);
        (
            transcode::plain_head(head.status, "application/json", Some(head), provider),
            out,
        )
    };
    resp.put(http::header::CONTENT_LENGTH, body.len().into());
    resp.remove(http::header::TRANSFER_ENCODING);
    target_headers(&mut resp, ctx);
    whole(session, ctx, resp.done(), body).await
}

/// `x-sluice-target` and `x-sluice-attempts`: what served the request.
pub fn target_headers(resp: &mut impl Headers, ctx: &RequestCtx) {
    let label = ctx
        .model
        .as_ref()
        .and_then(|m| ctx.target.and_then(|i| m.targets.get(i)))
        .and_then(|t| t.label_header.clone());
    if let Some(l) = label {
        resp.put(X_SLUICE_TARGET, l);
    }
    resp.put(X_SLUICE_ATTEMPTS, ctx.attempts.into());
    super::admit::headers(resp, ctx);
}

/// What of a 2xx body was read before the head goes out.
pub(super) enum Body {
    /// Nothing: a stream, relayed as it arrives.
    Stream,
    /// All of it.
    Whole(Bytes),
    /// Its start, too large to hold whole: the rest streams after it.
    Begun(Bytes),
}

/// Relays a 2xx answer; from here on nothing is retried.
#[allow(clippy::too_many_arguments)]
pub(super) async fn relay(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    first: &Model,
    target: &Target,
    mut up: HttpSession,
    peer: &PooledPeer,
    prepared: translate::Prepared,
    body: Body,
) -> Result<(), GatewayError> {
    let provider = &target.provider;
    let inbound = ctx.inbound;
    let total = tokio::time::Instant::from_std(ctx.start + target.timeouts.total);
    let mut is_sse = ctx.stream;
    let relayed = if prepared.plan == Plan::Passthrough {
        let Some(head) = up.response_header() else {
            return Err(GatewayError::Internal("response head vanished".into()));
        };
        let mut resp = relay::response_header(head, provider);
        target_headers(&mut resp, ctx);
        ctx.status = resp.status().as_u16();
        let start = match body {
            Body::Whole(body) => {
                if let Some(run) = ctx.filters.as_mut().filter(|r| r.cx.usage.is_none()) {
                    run.cx.usage = provider.format.codec().decode_usage(&body);
                }
                resp.put(http::header::CONTENT_LENGTH, body.len().into());
                resp.remove(http::header::TRANSFER_ENCODING);
                // Read whole: the connection is back in the pool before the
                // answer goes out, ready for the client's next request.
                dispatch::release(gw, up, peer).await;
                return whole(session, ctx, resp.done(), body).await;
            }
            Body::Begun(start) => Some(start),
            Body::Stream => None,
        };
        is_sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        resp.chunked_unless_sized(session.req_header().version);
        super::admit::answering(ctx);
        session
            .write_response_header(resp.done(), false)
            .await
            .map_err(|_| GatewayError::ClientGone)?;
        if let Some(start) = start {
            relay::write(session, ctx, start).await?;
        }
        tokio::time::timeout_at(
            total,
            relay::body(
                session,
                &mut up,
                provider,
                target.timeouts.idle,
                ctx,
                is_sse,
                inbound,
            ),
        )
        .await
    } else {
        let body = match body {
            Body::Stream => None,
            Body::Whole(b) => Some(b),
            Body::Begun(_) => {
                return Err(GatewayError::Internal(
                    "a translated body must be whole".into(),
                ))
            }
        };
        let relay =
            transcode::Relay {
                provider,
                plan: prepared.plan,
                inbound,
                dropped: prepared.dropped.as_deref(),
                model: &first.name,
                idle: target.timeouts.idle,
                drain: first.filters.token_count.as_ref().is_some_and(|t| {
                    t.on_disconnect == sluice_filters::config::OnDisconnect::Drain
                }),
            };
        match tokio::time::timeout_at(total, relay.run(session, &mut up, ctx, body)).await {
            Ok(Ok(transcode::Rendered::Whole(head, out))) => {
                // As a passthrough answer read whole: the connection first.
                dispatch::release(gw, up, peer).await;
                return whole(session, ctx, head, out).await;
            }
            other => other.map(|r| r.map(|_| ())),
        }
    };
    let result = match relayed {
        Ok(r) => r,
        Err(_) => {
            let err = total_timeout(target);
            if is_sse && session.response_written().is_some() {
                let _ = session
                    .write_response_body(Some(err.sse_event(inbound)), true)
                    .await;
                ctx.mid_stream_error = true;
            }
            Err(err)
        }
    };
    match &result {
        Ok(()) => dispatch::release(gw, up, peer).await,
        Err(e) => {
            if matches!(
                e,
                GatewayError::UpstreamBroken { .. } | GatewayError::UpstreamTimeout { .. }
            ) {
                health(target, false, None);
            }
            up.shutdown().await;
        }
    }
    result
}

/// Writes a complete response.
pub(super) async fn whole(
    session: &mut Session,
    ctx: &mut RequestCtx,
    resp: Box<ResponseHeader>,
    body: Bytes,
) -> Result<(), GatewayError> {
    super::admit::answering(ctx);
    session
        .write_response_header(resp, false)
        .await
        .map_err(|_| GatewayError::ClientGone)?;
    relay::write(session, ctx, body).await?;
    session
        .write_response_body(None, true)
        .await
        .map_err(|_| GatewayError::ClientGone)
}
