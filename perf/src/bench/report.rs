//! The bench result, as JSON and as a one-line human summary.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::BenchArgs;

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

#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub mode: &'static str,
    pub connections: usize,
    pub target_rate: Option<f64>,
    pub seconds: f64,
    pub requests: u64,
    pub ok: u64,
    pub rps: f64,
    pub latency: Option<Latency>,
    /// Time to first body byte (time to first token for streams).
    pub ttfb: Option<Latency>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<&'static str, u64>,
}

impl Report {
    pub(super) fn new(
        args: &BenchArgs,
        latency: &Histogram<u64>,
        ttfb: &Histogram<u64>,
        ok: u64,
        statuses: BTreeMap<u16, u64>,
        errors: BTreeMap<&'static str, u64>,
        elapsed: Duration,
    ) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let requests = latency.len();
        Report {
            url: args.url.clone(),
            mode: if args.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            connections: args.connections,
            target_rate: args.rate,
            seconds: secs,
            requests,
            ok,
            rps: requests as f64 / secs,
            latency: Latency::of(latency),
            ttfb: Latency::of(ttfb),
            statuses,
            errors,
        }
    }

    pub fn summary(&self) -> String {
        let lat = self
            .latency
            .as_ref()
            .map_or(String::from("no samples"), |l| {
                format!(
                    "p50 {}us p90 {}us p99 {}us p99.9 {}us max {}us",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                )
            });
        format!(
            "{} req in {:.1}s = {:.0} req/s ({} ok, errors {:?}) latency {}",
            self.requests, self.seconds, self.rps, self.ok, self.errors, lat
        )
    }
}
