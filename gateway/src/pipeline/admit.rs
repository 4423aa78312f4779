//! Stage `admit`: who is calling, may they call this, and is there room in
//! their limits and budget. The reservation it takes is settled by `record`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use pingora::proxy::Session;

use super::head::{Headers, X_SLUICE_REQUEST_ID};
use super::RequestCtx;
use crate::errors::GatewayError;
use crate::govern::admit::fmt_duration;
use crate::govern::usage::Entry;
use crate::snapshot::Model;

/// A process-unique request id: a random prefix chosen at start and a
/// counter, both in hex (written by hand: `format!` costs 2k instructions).
pub fn request_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        use ring::rand::SecureRandom;
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        format!("req_{:016x}", u64::from_le_bytes(b) | 1)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(prefix.len() + 16);
    id.push_str(prefix);
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        let d = ((n >> (i * 4)) & 0xf) as u32;
        id.push(char::from_digit(d, 16).unwrap_or('0'));
    }
    id
}

/// Authenticates the caller and checks the path is theirs to call.
pub async fn caller(session: &mut Session, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let gov = ctx.snapshot.governance.clone();
    if !gov.is_on() && gov.usage.get().is_none() {
        return Ok(());
    }
    ctx.request_id = Some(request_id());
    let req = session.req_header();
    let caller = match gov.authenticate(&req.headers).await {
        Ok(c) => c,
        Err(e) => {
            // The body was not read: the connection cannot carry another request.
            session.set_keepalive(None);
            return Err(e);
        }
    };
    if let Some(c) = &caller {
        let path = session.req_header().uri.path();
        if !c.allows_endpoint(path) {
            let err = GatewayError::Forbidden {
                code: "endpoint_not_allowed",
                message: format!("'{}' may not call {path}", c.subject),
            };
            session.set_keepalive(None);
            return Err(err);
        }
    }
    ctx.caller = caller;
    Ok(())
}

/// Whether the caller may use the public model `name`.
pub fn model_allowed(ctx: &RequestCtx, name: &str) -> Result<(), GatewayError> {
    match &ctx.caller {
        Some(c) if !c.allows_model(name) => Err(GatewayError::Forbidden {
            code: "model_not_allowed",
            message: format!("'{}' may not use the model '{name}'", c.subject),
        }),
        _ => Ok(()),
    }
}

/// Reserves the request's share; notes it in the usage log's write-ahead
/// file so it is recorded even if this process dies before it ends.
pub async fn reserve(
    ctx: &mut RequestCtx,
    model: &Model,
    body_len: usize,
    max_tokens: Option<u64>,
    choices: u64,
) -> Result<(), GatewayError> {
    let gov = ctx.snapshot.governance.clone();
    if !gov.is_on() && gov.usage.get().is_none() {
        return Ok(());
    }
    // Each of the request's completions may use all of max_tokens (or the
    // configured default); embeddings produce none.
    let completion = match ctx.endpoint {
        Some(super::Endpoint::Embeddings) => 0,
        _ => max_tokens
            .unwrap_or(gov.default_max_tokens)
            .saturating_mul(choices.max(1)),
    };
    let upstream = model
        .targets
        .first()
        .map_or("", |t| t.upstream_model.as_str());
    // At most one token per 3 bytes of body for nearly all text; the
    // settlement replaces it with what the upstream reports.
    let prompt = body_len.div_ceil(3) as u64;
    let ticket = gov
        .admit(
            ctx.caller.as_ref(),
            &model.name,
            upstream,
            prompt,
            Some(completion),
        )
        .await?;
    if let (Some(log), Some(id)) = (gov.usage.get(), &ctx.request_id) {
        let r = Entry {
            prompt_tokens: prompt,
            completion_tokens: ticket.reserved_tokens.saturating_sub(prompt),
            cost_nano_usd: ticket.reserved_cost,
            model: Some(&model.name),
            ..record(ctx, id, ctx.start.elapsed())
        };
        let noted = log.begin(&r);
        match noted {
            Ok(gen) => ctx.wal_gen = Some(gen),
            Err(e) => {
                gov.usage_failed(&e);
                // Refused: it takes nothing (a dropped ticket would charge).
                let mut ticket = ticket;
                ticket.refuse();
                return Err(GatewayError::Internal(
                    "the usage log cannot be written".into(),
                ));
            }
        }
    }
    ctx.ticket = Some(ticket);
    Ok(())
}

/// Before any of a noted request's answer goes out, its note is written
/// (see `UsageLog::commit`). If the disk refuses it, the answer still goes
/// out (the upstream has served it) and the failure is logged and counted
/// in `sluice_usage_errors_total`; new requests are refused until a write
/// succeeds again.
pub fn answering(ctx: &RequestCtx) {
    if ctx.wal_gen.is_none() {
        return;
    }
    let gov = &ctx.snapshot.governance;
    if let Err(e) = gov.usage.get().map_or(Ok(()), |log| log.commit()) {
        gov.usage_failed(&e);
    }
}

/// The parts of a usage record known from the context alone.
/// `elapsed`: the request's time so far, read once by the caller.
pub fn record<'a>(ctx: &'a RequestCtx, id: &'a str, elapsed: std::time::Duration) -> Entry<'a> {
    let start_ms = crate::govern::limits::now_nanos() / 1_000_000 - elapsed.as_millis() as u64;
    Entry {
        ts_ms: start_ms,
        request_id: id,
        tenant: ctx.caller.as_ref().map(|c| c.tenant.name.as_str()),
        key_id: ctx.caller.as_ref().map(|c| c.subject.as_str()),
        // JWT callers have no key: their subject is recorded marked.
        jwt: ctx.caller.as_ref().is_some_and(|c| c.key.is_none()),
        stream: ctx.stream,
        ..Entry::default()
    }
}

/// A reset time as OpenAI spells it; whole seconds up to a minute and
/// whole milliseconds under a second (the common cases: a bucket that
/// refills fast resets within milliseconds) come from tables, not a new
/// string.
fn reset_value(d: std::time::Duration) -> http::HeaderValue {
    use http::HeaderValue as V;
    static TABLES: std::sync::LazyLock<[Vec<V>; 2]> = std::sync::LazyLock::new(|| {
        let table = |n: u64, unit: &str| -> Vec<V> {
            (0..n)
                .map(|i| V::try_from(format!("{i}{unit}")).unwrap_or(V::from_static("0s")))
                .collect()
        };
        [table(61, "s"), table(1000, "ms")]
    });
    let [seconds, millis] = &*TABLES;
    let s = d.as_secs();
    let hit = if s == 0 && d.subsec_nanos() > 0 {
        millis.get(d.subsec_millis() as usize)
    } else if d.subsec_nanos() == 0 || s < 60 {
        seconds.get(s as usize + usize::from(d.subsec_nanos() > 0))
    } else {
        None
    };
    match hit {
        Some(v) => v.clone(),
        None => V::try_from(fmt_duration(d)).unwrap_or(V::from_static("0s")),
    }
}

/// A limit's header value. Limits come from the config, so a few values
/// recur on every request: they are made once per thread and shared.
fn limit_value(n: u64) -> http::HeaderValue {
    type Recent = (usize, [Option<(u64, http::HeaderValue)>; 4]);
    thread_local! {
        static RECENT: std::cell::RefCell<Recent> =
            const { std::cell::RefCell::new((0, [None, None, None, None])) };
    }
    RECENT.with(|cell| {
        let Ok(mut recent) = cell.try_borrow_mut() else {
            return http::HeaderValue::from(n);
        };
        if let Some((_, v)) = recent.1.iter().flatten().find(|(k, _)| *k == n) {
            return v.clone();
        }
        let v = http::HeaderValue::from(n);
        let next = recent.0;
        recent.1[next] = Some((n, v.clone()));
        recent.0 = (next + 1) % 4;
        v
    })
}

/// `x-sluice-request-id` and OpenAI's `x-ratelimit-*` headers.
pub fn headers(resp: &mut impl Headers, ctx: &RequestCtx) {
    use http::HeaderName as N;
    const NAMES: [[N; 3]; 2] = [
        [
            N::from_static("x-ratelimit-limit-requests"),
            N::from_static("x-ratelimit-remaining-requests"),
            N::from_static("x-ratelimit-reset-requests"),
        ],
        [
            N::from_static("x-ratelimit-limit-tokens"),
            N::from_static("x-ratelimit-remaining-tokens"),
            N::from_static("x-ratelimit-reset-tokens"),
        ],
    ];
    if let Some(id) = &ctx.request_id {
        if let Ok(v) = http::HeaderValue::from_str(id) {
            resp.put(X_SLUICE_REQUEST_ID, v);
        }
    }
    let Some(t) = &ctx.ticket else { return };
    for ([limit, remaining, reset], view) in NAMES.into_iter().zip([t.requests, t.tokens]) {
        let Some(v) = view else { continue };
        resp.put(limit, limit_value(v.limit));
        resp.put(remaining, http::HeaderValue::from(v.remaining));
        resp.put(reset, reset_value(v.reset));
    }
}

#[cfg(test)]
mod tests {
    use super::reset_value;
    use std::time::Duration;

    #[test]
    fn request_ids_are_the_prefix_and_the_counter_in_hex() {
        let a = super::request_id();
        let b = super::request_id();
        assert!(a.len() > 20);
        assert!(a.starts_with("req_") && b.starts_with(&a[..20]));
        let n = |id: &str| u64::from_str_radix(&id[20..], 16).unwrap();
        assert!(n(&b) > n(&a), "{a} {b}");
        assert!(a[20..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }

    #[test]
    fn limit_values_are_the_numbers_whether_made_or_reused() {
        for n in [0, 4, 8, 1_000, 4, 0, u64::MAX, 60, 1_000] {
            assert_eq!(super::limit_value(n), n.to_string().as_str());
        }
    }

    #[test]
    fn reset_values_round_up_to_whole_seconds_within_a_minute() {
        assert_eq!(reset_value(Duration::from_millis(12_300)), "13s");
        assert_eq!(reset_value(Duration::from_secs(60)), "60s");
        assert_eq!(reset_value(Duration::from_millis(300)), "300ms");
        assert_eq!(reset_value(Duration::from_micros(1_500)), "1ms");
        assert_eq!(reset_value(Duration::from_micros(999_999)), "999ms");
        assert_eq!(reset_value(Duration::from_micros(400)), "0ms");
        assert_eq!(reset_value(Duration::ZERO), "0s");
        assert_eq!(reset_value(Duration::from_millis(60_500)), "1m0s");
        assert_eq!(reset_value(Duration::from_secs(3_700)), "1h1m40s");
    }
}
