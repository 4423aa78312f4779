//! Raw passthrough routes, served by Pingora's own proxy flow: bodies stream
//! both ways unbuffered and unparsed. Sluice picks the provider (same
//! balancers and health as the model pools), swaps the client's credentials
//! for the provider's, and maps the path under the provider's base URL.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};

use super::{respond, RequestCtx};
use crate::errors::GatewayError;
use crate::routing::health::{now_ms, InFlight};
use crate::routing::retry::retryable_status;
use crate::routing::Tried;
use crate::snapshot::{PassRoute, Target};
use crate::upstream::never_forward;

/// Connect attempts per request (each on another provider when there is one).
const MAX_CONNECTS: u32 = 3;

pub struct PassCtx {
    pub route: Arc<PassRoute>,
    current: Option<(usize, InFlight)>,
    tried: Tried,
    sent_at: Option<Instant>,
    body_bytes: usize,
}

/// Claims the request for a passthrough route when its path has the prefix.
/// Takes the request when a passthrough route's prefix starts its path;
/// only request limits apply to it (its body is never read).
pub async fn claim(session: &Session, ctx: &mut RequestCtx) -> Result<bool, GatewayError> {
    let Some(route) = ctx
        .snapshot
        .passthrough_for(session.req_header().uri.path())
        .cloned()
    else {
        return Ok(false);
    };
    if let Some(c) = &ctx.caller {
        // Passthrough bodies are not read: no model list or budget can hold
        // there. A caller bound by either must be let in by name.
        if c.is_bounded() && !c.lists_endpoints() {
            return Err(GatewayError::Forbidden {
                code: "endpoint_not_allowed",
                message: format!(
                    "'{}' has a model list or budget, and {} is a passthrough route, which is \
                 not metered: allow it in the key's or tenant's `endpoints`",
                    c.subject, route.prefix
                ),
            });
        }
    }
    super::admit::reserve(ctx, &route.pool, 0, Some(0), 1).await?;
    ctx.model = Some(route.pool.clone());
    ctx.pass = Some(PassCtx {
        route,
        current: None,
        tried: 0,
        sent_at: None,
        body_bytes: 0,
    });
    Ok(true)
}

pub fn target(ctx: &RequestCtx) -> Option<&Target> {
    let p = ctx.pass.as_ref()?;
    let (i, _) = p.current.as_ref()?;
    p.route.pool.targets.get(*i)
}

pub async fn peer(ctx: &mut RequestCtx) -> pingora::Result<Box<HttpPeer>> {
    let Some(pass) = ctx.pass.as_mut() else {
        return Err(Error::explain(ErrorType::HTTPStatus(404), "no route"));
    };
    let pool = pass.route.pool.clone();
    let (i, guard) = match pool.select(pass.tried) {
        Ok(picked) => picked,
        Err(why) => {
            ctx.error = Some(why.into_error(&pool.name));
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no healthy provider",
            ));
        }
    };
    pass.tried |= 1 << i;
    pass.current = Some((i, guard));
    ctx.attempts += 1;
    ctx.target = Some(i);
    let t = &pool.targets[i];
    t.counters.selected.inc();
    let peer = t.provider.peer().await.map_err(|e| {
        let msg = e.to_string();
        ctx.error = Some(e);
        Error::explain(ErrorType::ConnectError, msg)
    })?;
    let mut peer = peer.0.clone();
    // Pingora applies these to the exchange: no stalled upstream holds a
    // client (or a half-open probe) for ever.
    let o = &mut peer.options;
    o.read_timeout = Some(t.timeouts.first_byte.max(t.timeouts.idle));
    o.write_timeout = Some(t.timeouts.idle);
    o.idle_timeout = Some(std::time::Duration::from_secs(60));
    Ok(Box::new(peer))
}

/// The upstream request: path under the provider's base, its credentials
/// instead of the client's.
pub fn upstream_request(ctx: &mut RequestCtx, req: &mut RequestHeader) -> pingora::Result<()> {
    let Some(pass) = ctx.pass.as_mut() else {
        return Ok(());
    };
    pass.sent_at = Some(Instant::now());
    let prefix_len = pass.route.prefix.len();
    let Some(t) = target(ctx) else {
        return Err(Error::explain(ErrorType::InternalError, "no target"));
    };
    let provider = &t.provider;
    let rest = req
        .uri
        .path_and_query()
        .map_or("", |pq| pq.as_str())
        .get(prefix_len..)
        .unwrap_or("");
    let Some(rest) = safe_rest(rest) else {
        ctx.error = Some(GatewayError::BadRequest(
            "The path may not contain '.' or '..' segments".into(),
        ));
        return Err(Error::explain(
            ErrorType::HTTPStatus(400),
            "path escapes the route",
        ));
    };
    let path = format!("{}/{rest}", provider.base.path);
    let uri = path
        .parse::<http::Uri>()
        .map_err(|e| Error::explain(ErrorType::InvalidHTTPHeader, format!("bad path: {e}")))?;
    req.set_uri(uri);
    let drop: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|n| {
            let n = n.as_str();
            never_forward(n)
                && !matches!(
                    n,
                    "content-length"
                        | "transfer-encoding"
                        | "te"
                        | "upgrade"
                        | "connection"
                        | "expect"
                )
        })
        .cloned()
        .collect();
    for name in drop {
        req.remove_header(&name);
    }
    req.insert_header(http::header::HOST, provider.host_header.clone())?;
    for (name, value) in &provider.auth {
        req.insert_header(name.clone(), value.clone())?;
    }
    for (name, value) in &provider.headers {
        req.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}

/// Query parameters that carry credentials: never forwarded.
const CREDENTIAL_PARAMS: &[&str] = &[
    "key",
    "api-key",
    "api_key",
    "apikey",
    "access_token",
    "token",
];

/// The path below the prefix, refused when a segment is `.` or `..` (in any
/// percent-encoding: upstream front ends normalise them, which would escape
/// the base path), with credential query parameters removed.
fn safe_rest(rest: &str) -> Option<String> {
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let dots = |seg: &str| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    if path.split(['/', '\\']).any(dots) || path.to_ascii_lowercase().contains("%2f") {
        return None;
    }
    let Some(query) = query else {
        return Some(path.to_string());
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
            !CREDENTIAL_PARAMS.contains(&name.as_str())
        })
        .collect();
    Some(if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    })
}

/// Counts the request body against the route's limit.
pub fn request_body(ctx: &mut RequestCtx, body: &Option<Bytes>) -> pingora::Result<()> {
    let Some(pass) = ctx.pass.as_mut() else {
        return Ok(());
    };
    pass.body_bytes += body.as_ref().map_or(0, Bytes::len);
    if let Some(limit) = pass.route.max_body {
        if pass.body_bytes > limit {
            ctx.error = Some(GatewayError::BodyTooLarge { limit });
            return Err(Error::explain(
                ErrorType::HTTPStatus(413),
                "request body too large",
            ));
        }
    }
    Ok(())
}

/// The upstream's head: its verdict on the provider's health, and who served.
pub fn response(ctx: &mut RequestCtx, resp: &mut ResponseHeader) {
    // Pingora writes this head next: the request's note must be out first.
    super::admit::answering(ctx);
    let status = resp.status.as_u16();
    ctx.status = status;
    let ttfb = ctx
        .pass
        .as_ref()
        .and_then(|p| p.sent_at)
        .map(|s| s.elapsed());
    if let Some(t) = target(ctx) {
        if status == 429 {
            let pause = resp
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::routing::retry::parse_retry_after);
            if let Some(p) = pause {
                let ms = u64::try_from(p.as_millis()).unwrap_or(u64::MAX);
                t.health.hold_off(now_ms(), ms);
            }
        }
        let ok = !retryable_status(status);
        // A 429 is a failed attempt but a healthy upstream asking for a pause.
        let healthy = ok || status == 429;
        t.record(ok, healthy, ttfb.filter(|_| ok));
    }
    super::answer::target_headers(resp, ctx);
}

/// A connect failure: counted against the provider, and retried on another
/// one while the request body can still be replayed.
pub fn connect_failed(session: &Session, ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    if let Some(t) = target(ctx) {
        t.record(false, false, None);
    }
    if let Some(pass) = ctx.pass.as_mut() {
        pass.current = None;
    }
    let replayable = !session.as_ref().retry_buffer_truncated();
    e.set_retry(ctx.attempts < MAX_CONNECTS && replayable);
    e
}

/// A failure once connected: counted against the provider when it was the
/// provider's (not a client that left, or a body over the limit).
pub fn proxy_failed(ctx: &mut RequestCtx, e: &Error) {
    if e.esource() != &ErrorSource::Upstream || ctx.error.is_some() {
        return;
    }
    if let Some(t) = target(ctx) {
        t.record(false, false, None);
    }
}

/// Answers a failed passthrough in OpenAI's error shape.
pub async fn fail(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let err = ctx.error.take().unwrap_or_else(|| {
        let provider = target(ctx).map_or_else(|| "-".to_string(), |t| t.provider.name.clone());
        let cause = e.to_string();
        match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                GatewayError::UpstreamTimeout { provider, cause }
            }
            ErrorType::HTTPStatus(code) if *code < 500 => GatewayError::BadRequest(cause),
            _ if e.esource() == &ErrorSource::Downstream => GatewayError::ClientGone,
            ErrorType::ConnectRefused | ErrorType::ConnectError | ErrorType::ConnectNoRoute => {
                GatewayError::UpstreamConnect { provider, cause }
            }
            _ => GatewayError::UpstreamBroken { provider, cause },
        }
    });
    let code = if matches!(err, GatewayError::ClientGone) || session.response_written().is_some() {
        0
    } else {
        respond::error(session, &err, ctx).await;
        err.status()
    };
    if code != 0 || ctx.status == 0 {
        ctx.status = err.status();
    }
    ctx.error = Some(err);
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}

#[cfg(test)]
mod tests {
    use super::safe_rest;

    #[test]
    fn paths_stay_below_the_base_and_keys_stay_home() {
        assert_eq!(
            safe_rest("files?purpose=x").as_deref(),
            Some("files?purpose=x")
        );
        assert_eq!(safe_rest("a/b/c").as_deref(), Some("a/b/c"));
        assert_eq!(
            safe_rest("files?key=k&limit=2").as_deref(),
            Some("files?limit=2")
        );
        assert_eq!(safe_rest("files?API_KEY=k").as_deref(), Some("files"));
        for bad in [
            "../x",
            "a/../../x",
            "./x",
            "a/%2e%2E/x",
            "a/.%2e",
            "a%2F..%2Fx",
            "a\\..\\x",
        ] {
            assert_eq!(safe_rest(bad), None, "{bad}");
        }
        assert_eq!(safe_rest("a/..b/c").as_deref(), Some("a/..b/c"));
    }
}
