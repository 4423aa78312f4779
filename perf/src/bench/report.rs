//! The bench result, as JSON and as a one-line human summary.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::Stats;

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        })
    }
}

/// Output tokens per second of single streams, as the same percentiles.
#[derive(Debug, Serialize)]
pub struct Rate {
    pub p50: u64,
    pub p10: u64,
    pub p1: u64,
    pub mean: f64,
}

/// One second of the run.
#[derive(Debug, Serialize)]
pub struct Second {
    pub t: usize,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub shape: Shape,
    pub seconds: f64,
    pub requests: u64,
    pub ok: u64,
    pub rps: f64,
    /// From each request's intended send time in open loop.
    pub latency: Option<Latency>,
    /// Time to first body byte.
    pub ttfb: Option<Latency>,
    /// Open loop: how late requests left after their intended time (the
    /// generator's timer and scheduling, waits for a busy connection);
    /// part of `latency`.
    pub send_lag: Option<Latency>,
    /// Streams: time to the first token event.
    pub ttft: Option<Latency>,
    /// Open-loop streams: the same, from when each request actually left
    /// (`ttft` less the generator's send lag, request by request).
    pub ttft_sent: Option<Latency>,
    /// Streams: gaps between token events.
    pub itl: Option<Latency>,
    pub stream_tokens_per_s: Option<Rate>,
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    /// `(percentile, µs)` points of the latency distribution.
    pub percentiles: Vec<(f64, u64)>,
    pub timeline: Vec<Second>,
}

/// How the run was driven.
#[derive(Debug, Serialize)]
pub struct Shape {
    pub url: String,
    /// `closed`, `open` or `ramp`.
    pub mode: &'static str,
    pub arrivals: Option<&'static str>,
    /// `http/1.1` or `h2`.
    pub protocol: &'static str,
    pub connections: usize,
    /// Concurrent requests per connection (h2 streams; 1 over HTTP/1.1).
    pub streams_per_connection: usize,
    pub target_rate: Option<f64>,
}

impl Report {
    pub(super) fn new(shape: Shape, s: &Stats, secs: f64) -> Report {
        let secs = secs.max(1e-9);
        let requests = s.latency.len();
        let percentiles = if s.latency.is_empty() {
            Vec::new()
        } else {
            // Two points per halving of 1 - q (0, 29.3, 50, 64.6, 75 …),
            // up to 99.999: evenly spaced on a log scale of 1/(1-q).
            (0..=34)
                .map(|i| {
                    let q = 1.0 - 0.5f64.powf(f64::from(i) / 2.0);
                    let q = q.min(0.99999);
                    (q * 100.0, s.latency.value_at_quantile(q))
                })
                .collect()
        };
        let timeline = s
            .timeline
            .iter()
            .enumerate()
            .map(|(t, b)| Second {
                t,
                requests: b.latency.len(),
                errors: b.errors,
                p50_us: b.latency.value_at_quantile(0.5),
                p99_us: b.latency.value_at_quantile(0.99),
            })
            .collect();
        let h = &s.tokens_per_s;
        Report {
            shape,
            seconds: secs,
            requests,
            ok: s.ok,
            rps: requests as f64 / secs,
            latency: Latency::of(&s.latency),
            ttfb: Latency::of(&s.ttfb),
            send_lag: Latency::of(&s.send_lag),
            ttft: Latency::of(&s.ttft),
            ttft_sent: Latency::of(&s.ttft_sent),
            itl: Latency::of(&s.itl),
            stream_tokens_per_s: (!h.is_empty()).then(|| Rate {
                p50: h.value_at_quantile(0.5),
                p10: h.value_at_quantile(0.1),
                p1: h.value_at_quantile(0.01),
                mean: h.mean(),
            }),
            output_tokens: s.tokens,
            output_tokens_per_s: s.tokens as f64 / secs,
            statuses: s.statuses.clone(),
            errors: s.errors.clone(),
            percentiles,
            timeline,
        }
    }

    pub fn summary(&self) -> String {
        let pct = |l: &Option<Latency>| {
            l.as_ref().map_or(String::from("no samples"), |l| {
                format!(
                    "p50 {}us p90 {}us p99 {}us p99.9 {}us max {}us",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                )
            })
        };
        let mut out = format!(
            "{} req in {:.1}s = {:.0} req/s ({} ok, errors {:?}) latency {}",
            self.requests,
            self.seconds,
            self.rps,
            self.ok,
            self.errors,
            pct(&self.latency)
        );
        if let Some(lag) = &self.send_lag {
            out.push_str(&format!(
                "\ngenerator send lag (in the latency above): p50 {}us p99 {}us",
                lag.p50_us, lag.p99_us
            ));
        }
        if self.ttft.is_some() {
            out.push_str(&format!(
                "\nstreams: TTFT {}; ITL {}; {:.0} output tokens/s",
                pct(&self.ttft),
                pct(&self.itl),
                self.output_tokens_per_s
            ));
        }
        if self.ttft_sent.is_some() {
            out.push_str(&format!(
                "\nTTFT from the send (without the send lag): {}",
                pct(&self.ttft_sent)
            ));
        }
        out
    }
}
