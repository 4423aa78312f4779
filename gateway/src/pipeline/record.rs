//! Stage `record`: metrics and the access log line, exactly once per request
//! however it ended. Called from Pingora's `logging` hook.

use super::RequestCtx;
use crate::metrics::Metrics;

pub fn record(metrics: &Metrics, method: &str, path: &str, ctx: &RequestCtx) {
    let elapsed = ctx.start.elapsed();
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
            error = error.as_str(),
        );
    }
}
