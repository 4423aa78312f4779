//! Stage `attempt`: tries at the upstream until one answer is kept. A try
//! that fails before anything reached the client (connect error, timeout,
//! 408/429/5xx) is retried with backoff on another target of the pool when
//! there is one, then on the fallback models; the kept answer is relayed.
//! Nothing is retried once the client has seen a byte of the response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use sluice_providers::{Format, TextRequest};

use super::answer::{self, read_whole, total_timeout, upstream_error_response, Body, Read};
use super::dispatch;
use super::relay::client_gone;
use super::transcode;
use super::translate::{Input, Plan};
use super::RequestCtx;
use crate::errors::GatewayError;
use crate::proxy::Gateway;
use crate::routing::health::now_ms;
use crate::routing::retry::{parse_retry_after, retryable_status};
use crate::routing::{NoTarget, Tried};
use crate::snapshot::{Model, Target};

/// Largest upstream error body read (to translate it or decide a fallback).
const MAX_ERROR_BODY: usize = 1 << 20;

/// A failed try whose answer may still be the one the client gets.
enum Failure {
    Error(GatewayError),
    /// An upstream error response, read whole.
    Status {
        head: Box<ResponseHeader>,
        body: Bytes,
        target: usize,
        model: Arc<Model>,
    },
}

/// Where the attempts are: the model whose pool is in use and what it tried.
struct Cursor {
    model: Arc<Model>,
    tried: Tried,
    on_model: u32,
    /// Models tried besides the first (named in `first`).
    visited: Vec<String>,
    first: Arc<Model>,
    fallbacks: std::collections::VecDeque<String>,
    deadline: Instant,
}

impl Cursor {
    /// Another try on this model: attempts left and the deadline not passed.
    fn more_here(&self) -> bool {
        self.on_model < self.model.retry.attempts && Instant::now() < self.deadline
    }

    /// Moves to the next fallback model not yet visited.
    fn fall_back(&mut self, gw: &Gateway, ctx: &RequestCtx) -> bool {
        while let Some(name) = self.fallbacks.pop_front() {
            if let Some(next) = self.jump(gw, ctx, &name) {
                self.model = next;
                return true;
            }
        }
        false
    }

    fn jump(&mut self, gw: &Gateway, ctx: &RequestCtx, name: &str) -> Option<Arc<Model>> {
        if name == self.first.name || self.visited.iter().any(|v| v == name) {
            return None;
        }
        let next = ctx.snapshot.models.get(name)?.clone();
        gw.metrics.routing.fallback(&self.model.name, name);
        self.visited.push(name.to_string());
        self.tried = 0;
        self.on_model = 0;
        Some(next)
    }

    fn has_fallback(&self) -> bool {
        self.fallbacks
            .iter()
            .any(|f| *f != self.first.name && !self.visited.contains(f))
    }
}

pub async fn run(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
    input: &mut Input,
    texts: Option<&TextRequest<'_>>,
    first: Arc<Model>,
) -> Result<(), GatewayError> {
    let mut cur = Cursor {
        deadline: ctx.start + first.retry.deadline,
        fallbacks: first.fallback.iter().cloned().collect(),
        visited: Vec::new(),
        first: first.clone(),
        model: first.clone(),
        tried: 0,
        on_model: 0,
    };
    let mut last: Option<Failure> = None;
    // A failed try: the next one (after any backoff), or this failure as the answer.
    macro_rules! try_again {
        ($failure:expr) => {{
            last = Some($failure);
            if next_try(session, &mut cur, gw, ctx).await? {
                continue;
            }
            return give_up(session, ctx, last, &cur.model, NoTarget::Busy).await;
        }};
    }
    loop {
        let (i, in_flight) = match cur.model.select(cur.tried) {
            Ok(picked) => picked,
            Err(NoTarget::Cooling { wait_ms }) if cur.more_here() => {
                let wait = Duration::from_millis(wait_ms);
                if Instant::now() + wait < cur.deadline {
                    pause(session, wait).await?;
                    continue;
                }
                if cur.fall_back(gw, ctx) {
                    continue;
                }
                return give_up(
                    session,
                    ctx,
                    last,
                    &cur.model,
                    NoTarget::Cooling { wait_ms },
                )
                .await;
            }
            Err(why) => {
                if cur.fall_back(gw, ctx) {
                    continue;
                }
                return give_up(session, ctx, last, &cur.model, why).await;
            }
        };
        if ctx.attempts > 0 && Instant::now() >= cur.deadline {
            return give_up(session, ctx, last, &cur.model, NoTarget::Busy).await;
        }
        let model = cur.model.clone();
        let target = &model.targets[i];
        if ctx.filters.is_none() && !first.filters.is_empty() {
            let mut run = first.filters.start(&target.upstream_model);
            // Counting alone needs no decoded request unless a stream must be
            // translated to be counted; the answer's usage is read off it.
            let filtered = if first.usage_only && !input.stream {
                Ok(())
            } else {
                input.filter(&mut run, texts)
            };
            ctx.filters = Some(run);
            filtered?;
        }
        cur.tried |= 1 << i;
        let prepared = match input.prepare(target) {
            Ok(p) => p,
            // This target cannot take the request (its format cannot express
            // it, a strict provider): another target of the pool may.
            Err(e) if model.untried_left(cur.tried) => {
                last = Some(Failure::Error(e));
                continue;
            }
            Err(e) => return Err(e),
        };
        ctx.attempts += 1;
        cur.on_model += 1;
        ctx.model = Some(model.clone());
        ctx.target = Some(i);
        target.counters.selected.inc();
        if ctx.attempts > 1 {
            gw.metrics.routing.retry(&model.name);
        }
        let provider = &target.provider;
        let head = dispatch::request_header(
            session.req_header(),
            provider,
            input.endpoint,
            &prepared.path,
            prepared.body.len(),
            input.stream,
        )?;
        let total = tokio::time::Instant::from_std(ctx.start + target.timeouts.total);
        // A later attempt may start with little of the request's time left;
        // running out of it then is not the target's fault.
        let sent_at = Instant::now();
        let short_budget = total.saturating_duration_since(tokio::time::Instant::from_std(sent_at))
            < target.timeouts.first_byte;
        ctx.upstream_sent_at = Some(sent_at);
        let opened = match provider.peer().await {
            Err(e) => Err(e),
            Ok(mut peer) => {
                if target.timeouts.connect != provider.timeouts.connect {
                    // This model's connect timeout: a copy of the provider's peer.
                    let mut p = (*peer).clone();
                    p.0.options.connection_timeout = Some(target.timeouts.connect);
                    p.0.options.total_connection_timeout = Some(target.timeouts.connect);
                    peer = Arc::new(p);
                }
                let body = prepared.body.clone();
                let first_byte = target.timeouts.first_byte;
                tokio::select! {
                    r = tokio::time::timeout_at(total, dispatch::open(gw, &peer, provider, first_byte, head, body)) => {
                        r.unwrap_or_else(|_| Err(total_timeout(target))).map(|up| (up, peer))
                    }
                    _ = client_gone(session) => return Err(GatewayError::ClientGone),
                }
            }
        };
        let (mut up, peer) = match opened {
            Ok(o) => o,
            Err(e) => {
                let out_of_time = short_budget && matches!(e, GatewayError::UpstreamTimeout { .. });
                if !out_of_time {
                    health(target, false, None);
                }
                drop(in_flight);
                try_again!(Failure::Error(e));
            }
        };
        let head_at = Instant::now();
        ctx.upstream_head_at = Some(head_at);
        let ttfb = ctx.upstream_sent_at.map(|s| head_at - s);
        let status = up.response_header().map_or(502, |h| h.status.as_u16());
        let failed = retryable_status(status);
        target.record(!failed, !failed || status == 429, ttfb);
        if status == 429 {
            let retry_after = up
                .response_header()
                .and_then(|h| h.headers.get(http::header::RETRY_AFTER))
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            if let Some(ra) = retry_after {
                let ms = u64::try_from(ra.as_millis()).unwrap_or(u64::MAX);
                target.health.hold_off(now_ms(), ms);
            }
        }
        if (200..300).contains(&status) {
            if input.stream {
                // A stream is committed at its head.
                return answer::relay(
                    gw,
                    session,
                    ctx,
                    &first,
                    target,
                    up,
                    &peer,
                    prepared,
                    Body::Stream,
                )
                .await;
            }
            // A whole body before the head goes out: an upstream that dies
            // mid-body is retried instead of cutting the client off. Past the
            // bound, a same-format body is committed and streamed instead.
            let cap = transcode::MAX_HELD_BODY;
            let read = tokio::time::timeout_at(total, read_whole(session, &mut up, target, cap))
                .await
                .unwrap_or_else(|_| Err(total_timeout(target)));
            match read {
                Ok(Read::Whole(body)) => {
                    let body = Body::Whole(body);
                    return answer::relay(
                        gw, session, ctx, &first, target, up, &peer, prepared, body,
                    )
                    .await;
                }
                Ok(Read::Over(start)) if prepared.plan == Plan::Passthrough => {
                    let body = Body::Begun(start);
                    return answer::relay(
                        gw, session, ctx, &first, target, up, &peer, prepared, body,
                    )
                    .await;
                }
                Ok(Read::Over(_)) => {
                    up.shutdown().await;
                    return Err(GatewayError::UpstreamBroken {
                        provider: target.provider.name.clone(),
                        cause: format!("response body over {cap} bytes, too large to translate"),
                    });
                }
                Err(GatewayError::ClientGone) => return Err(GatewayError::ClientGone),
                Err(e) => {
                    up.shutdown().await;
                    health(target, false, None);
                    drop(in_flight);
                    try_again!(Failure::Error(e));
                }
            }
        }
        // Kept past the connection's release, for the answer to the client.
        let head = up.response_header().cloned().map(Box::new);
        let read =
            tokio::time::timeout_at(total, read_whole(session, &mut up, target, MAX_ERROR_BODY))
                .await
                .unwrap_or_else(|_| Err(total_timeout(target)));
        let body = match read {
            // An error body is cut at the bound: it only has to be shown.
            Ok(Read::Whole(b) | Read::Over(b)) => {
                dispatch::release(gw, up, &peer).await;
                b
            }
            Err(GatewayError::ClientGone) => return Err(GatewayError::ClientGone),
            Err(e) => {
                up.shutdown().await;
                drop(in_flight);
                try_again!(Failure::Error(e));
            }
        };
        let Some(head) = head else {
            return Err(GatewayError::Internal("response head vanished".into()));
        };
        if !failed {
            // A refusal another model may not give: the configured special fallbacks.
            if let Some(name) = special_fallback(&model, target.provider.format, status, &body) {
                if let Some(next) = cur.jump(gw, ctx, &name) {
                    cur.model = next;
                    continue;
                }
            }
            return upstream_error_response(session, ctx, &model, i, &head, body).await;
        }
        drop(in_flight);
        try_again!(Failure::Status {
            head,
            body,
            target: i,
            model: model.clone(),
        });
    }
}

/// After a failed try: waits out the backoff and says whether to go on
/// (on this model, or on a fallback).
async fn next_try(
    session: &mut Session,
    cur: &mut Cursor,
    gw: &Gateway,
    ctx: &RequestCtx,
) -> Result<bool, GatewayError> {
    if cur.more_here() {
        // Straight to an untried target; the same one again after a backoff.
        if !cur.model.untried_left(cur.tried) {
            let delay = cur.model.retry.delay(cur.on_model);
            if Instant::now() + delay >= cur.deadline {
                return Ok(cur.fall_back(gw, ctx));
            }
            pause(session, delay).await?;
        }
        return Ok(true);
    }
    Ok(cur.has_fallback() && cur.fall_back(gw, ctx))
}

async fn pause(session: &mut Session, d: Duration) -> Result<(), GatewayError> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = client_gone(session) => Err(GatewayError::ClientGone),
    }
}

/// An attempt that failed on the target's side.
pub(super) fn health(target: &Target, ok: bool, ttfb: Option<Duration>) {
    target.record(ok, ok, ttfb);
}

/// No try left: the last failure is the answer (an upstream error response
/// as the upstream gave it, translated), else why no target could be tried.
async fn give_up(
    session: &mut Session,
    ctx: &mut RequestCtx,
    last: Option<Failure>,
    model: &Model,
    why: NoTarget,
) -> Result<(), GatewayError> {
    match last {
        Some(Failure::Error(e)) => Err(e),
        Some(Failure::Status {
            head,
            body,
            target,
            model,
        }) => {
            ctx.model = Some(model.clone());
            ctx.target = Some(target);
            upstream_error_response(session, ctx, &model, target, &head, body).await
        }
        None => Err(why.into_error(&model.name)),
    }
}

/// The model configured for this refusal (`fallback_on`), if it is one.
fn special_fallback(model: &Model, format: Format, status: u16, body: &[u8]) -> Option<String> {
    if status != 400 && status != 403 {
        return None;
    }
    if model.fallback_context_length.is_none() && model.fallback_content_policy.is_none() {
        return None;
    }
    let err = format.codec().decode_error(status, body);
    let code = err.code.as_deref().unwrap_or("").to_ascii_lowercase();
    let msg = err.message.to_ascii_lowercase();
    let context = code == "context_length_exceeded"
        || code == "string_above_max_length"
        || [
            "context length",
            "context window",
            "maximum context",
            "prompt is too long",
            "too many tokens",
            "exceeds the maximum number of tokens",
        ]
        .iter()
        .any(|p| msg.contains(p));
    let policy = code == "content_filter"
        || code == "content_policy_violation"
        || [
            "content management policy",
            "content policy",
            "safety system",
        ]
        .iter()
        .any(|p| msg.contains(p));
    if context {
        model.fallback_context_length.clone()
    } else if policy {
        model.fallback_content_policy.clone()
    } else {
        None
    }
}
