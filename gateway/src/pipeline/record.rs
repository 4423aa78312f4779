//! Stage `record`: metrics and the access log line, exactly once per request
//! however it ended. Called from Pingora's `logging` hook.

use super::RequestCtx;
use crate::metrics::Metrics;

pub fn record(metrics: &Metrics, method: &str, path: &str, ctx: &mut RequestCtx) {
    // One clock read for the metrics and the usage record alike.
    let elapsed = ctx.start.elapsed();
    settle(ctx, elapsed);
    let target = ctx
        .model
        .as_ref()
        .and_then(|m| ctx.target.and_then(|i| m.targets.get(i)));
    let m = target.map_or(&metrics.unrouted, |t| &t.metrics);
    m.count(ctx.status);
    m.duration.observe(elapsed.as_secs_f64());
    if let (Some(sent), Some(head)) = (ctx.upstream_sent_at, ctx.upstream_head_at) {
        m.upstream.observe((head - sent).as_secs_f64());
    }
    if let (true, Some(first)) = (ctx.stream, ctx.first_body_at) {
        m.ttfb.observe((first - ctx.start).as_secs_f64());
    }
    if let Some(e) = &ctx.error {
        metrics.error(e.kind());
    }
    let cx = ctx.filters.as_ref().map(|f| &f.cx);
    let usage = cx.and_then(|c| c.usage);
    if let Some(cx) = cx {
        if let Some(n) = cx.prompt_estimate {
            m.estimated_prompt_tokens.inc_by(n);
        }
        if let Some(u) = usage {
            m.prompt_tokens.inc_by(u.prompt_tokens);
            m.completion_tokens.inc_by(u.completion_tokens);
        }
        for (kind, n) in &cx.detections {
            metrics.detection(kind, *n);
        }
        for (name, t) in cx.timings.iter().filter(|(_, t)| !t.is_zero()) {
            if let Some((_, h)) = metrics.filter_seconds.iter().find(|(n, _)| n == name) {
                h.observe(t.as_secs_f64());
            }
        }
    }
    if ctx.snapshot.access_log {
        let model = ctx.model.as_ref().map_or("-", |m| m.name.as_str());
        let provider = target.map_or("-", |t| t.provider.name.as_str());
        let error = ctx.error.as_ref().map_or(String::new(), |e| e.to_string());
        tracing::info!(
            target: "sluice::access",
            method,
            path,
            status = ctx.status,
            model,
            provider,
            stream = ctx.stream,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            bytes_out = ctx.bytes_out,
            prompt_tokens = usage.map(|u| u.prompt_tokens),
            completion_tokens = usage.map(|u| u.completion_tokens),
            error = error.as_str(),
        );
    }
}

/// Settles the request's reservation with its usage and writes its usage record.
fn settle(ctx: &mut RequestCtx, elapsed: std::time::Duration) {
    let Some(id) = ctx.request_id.take() else {
        return;
    };
    let gov = ctx.snapshot.governance.clone();
    let usage = ctx.filters.as_ref().and_then(|f| f.cx.usage);
    // Not sent upstream (refused, bad input): nothing was used.
    let usage = usage.filter(|_| ctx.attempts > 0 || ctx.pass.is_some());
    let Some(mut ticket) = ctx.ticket.take() else {
        // Refused before admission: recorded for the caller (401s are not:
        // no one to charge). Model lists and key info are not usage.
        if ctx.caller.is_some() && !(200..300).contains(&ctx.status) {
            write(&gov, ctx, &id, None, 0, elapsed);
        }
        return;
    };
    // The upstream took the request but its usage never became known: the
    // client left, the answer ran out of time after it began, or a 2xx
    // body was relayed without a usage to read. The upstream may bill it
    // in full, so the reservation stands.
    use crate::errors::GatewayError as E;
    let abandoned = usage.is_none()
        && ctx.upstream_sent_at.is_some()
        && (matches!(ctx.error, Some(E::ClientGone))
            || (ctx.upstream_head_at.is_some()
                && (matches!(
                    ctx.error,
                    Some(E::UpstreamTimeout { .. } | E::UpstreamBroken { .. })
                ) || (200..300).contains(&ctx.status))));
    let usage = if abandoned {
        Some(sluice_providers::Usage {
            prompt_tokens: ticket.reserved_prompt,
            completion_tokens: ticket.reserved_tokens - ticket.reserved_prompt,
            ..Default::default()
        })
    } else {
        usage
    };
    // Priced as the target that answered (a retry or fallback may differ
    // from the one the reservation was priced at).
    let price = served_by(ctx).and_then(|(m, t)| gov.price(m, &t.upstream_model));
    let cost = gov.settle(ctx.caller.as_ref(), &mut ticket, usage.as_ref(), price);
    write(&gov, ctx, &id, usage, cost, elapsed);
}

fn write(
    gov: &crate::govern::Governance,
    ctx: &RequestCtx,
    id: &str,
    usage: Option<sluice_providers::Usage>,
    cost: u64,
    elapsed: std::time::Duration,
) {
    let Some(log) = gov.usage.get() else { return };
    let target = ctx
        .model
        .as_ref()
        .and_then(|m| ctx.target.and_then(|i| m.targets.get(i)))
        .or_else(|| super::passthrough::target(ctx));
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let u = usage.unwrap_or_default();
    let r = crate::govern::usage::Entry {
        model: ctx.model.as_ref().map(|m| m.name.as_str()),
        provider: target.map(|t| t.provider.name.as_str()),
        target: target.map(|t| t.label.as_str()),
        status: ctx.status,
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u.cache_read_tokens,
        cost_nano_usd: cost,
        latency_ms: ms(elapsed),
        ttfb_ms: ctx.first_body_at.map(|t| ms(t - ctx.start)),
        upstream_ms: match (ctx.upstream_sent_at, ctx.upstream_head_at) {
            (Some(s), Some(h)) => Some(ms(h - s)),
            _ => None,
        },
        ..super::admit::record(ctx, id, elapsed)
    };
    if let Err(e) = log.end(&r, ctx.wal_gen) {
        gov.usage_failed(&e);
    }
    if let Some(shared) = &gov.shared {
        shared.push_usage(|| r.json());
    }
}

/// The model and target that served the request, if one did.
fn served_by(ctx: &RequestCtx) -> Option<(&str, &crate::snapshot::Target)> {
    let m = ctx.model.as_ref()?;
    let t = m.targets.get(ctx.target?)?;
    Some((m.name.as_str(), t))
}
