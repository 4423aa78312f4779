//! Per-connection results, merged at the end: HDR histograms of latency,
//! time to first byte and, for streams, time to first token, the gaps
//! between tokens and output tokens per second; counts by status and by
//! error kind; and a per-second timeline for the latency-over-time plot.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::stream::Tokens;

pub struct Stats {
    pub latency: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    /// Open loop: how late each request left after its intended time: the
    /// generator's timer and scheduling, and waits for a busy connection.
    pub send_lag: Histogram<u64>,
    pub ttft: Histogram<u64>,
    /// Open loop: time to first token from when the request actually left,
    /// without the generator's own lateness.
    pub ttft_sent: Histogram<u64>,
    pub itl: Histogram<u64>,
    /// Per request: output tokens per second after the first token.
    pub tokens_per_s: Histogram<u64>,
    pub tokens: u64,
    pub ok: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: BTreeMap<&'static str, u64>,
    /// One bucket a second from the start of measurement.
    pub timeline: Vec<Bucket>,
    protos: Protos,
}

pub struct Bucket {
    pub latency: Histogram<u64>,
    pub errors: u64,
}

/// Empty histograms to clone: microseconds (clamped to 10 minutes), three
/// significant digits (two for the timeline's buckets).
#[derive(Clone)]
pub struct Protos {
    fine: Histogram<u64>,
    coarse: Histogram<u64>,
}

impl Protos {
    pub fn new() -> Result<Protos, String> {
        // Auto-resizing: each grows to the values it sees, so a worker's
        // dozens of histograms and one per second of a long run stay small.
        let h = |digits| Histogram::new(digits).map_err(|e| e.to_string());
        Ok(Protos {
            fine: h(3)?,
            coarse: h(2)?,
        })
    }
}

/// Within the histograms' range: longer is recorded as 10 minutes.
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 600_000_000)
}

impl Stats {
    pub fn new(protos: &Protos) -> Stats {
        Stats {
            latency: protos.fine.clone(),
            ttfb: protos.fine.clone(),
            send_lag: protos.fine.clone(),
            ttft: protos.fine.clone(),
            ttft_sent: protos.fine.clone(),
            itl: protos.fine.clone(),
            tokens_per_s: protos.fine.clone(),
            tokens: 0,
            ok: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            timeline: Vec::new(),
            protos: protos.clone(),
        }
    }

    fn bucket(&mut self, second: usize) -> &mut Bucket {
        while self.timeline.len() <= second {
            self.timeline.push(Bucket {
                latency: self.protos.coarse.clone(),
                errors: 0,
            });
        }
        &mut self.timeline[second]
    }

    /// A request sent at `second` of the measurement took `latency`.
    pub fn done(&mut self, second: usize, latency: Duration, error: Option<&'static str>) {
        let us = micros(latency);
        let _ = self.latency.record(us);
        if let Some(kind) = error {
            *self.errors.entry(kind).or_default() += 1;
        }
        let b = self.bucket(second);
        let _ = b.latency.record(us);
        if error.is_some() {
            b.errors += 1;
        }
    }

    /// The streaming figures of one answer, measured from `intended`; in
    /// open loop, time to first token also from `left`, when it was sent.
    pub fn stream(&mut self, t: &Tokens, intended: Instant, left: Option<Instant>) {
        let Some(first) = t.first else { return };
        let _ = self
            .ttft
            .record(micros(first.saturating_duration_since(intended)));
        if let Some(left) = left {
            let _ = self
                .ttft_sent
                .record(micros(first.saturating_duration_since(left)));
        }
        for &g in &t.gaps_us {
            let _ = self.itl.record(g.clamp(1, 600_000_000));
        }
        self.tokens += t.count;
        if let Some(last) = t.last.filter(|_| t.count > 1) {
            let secs = last.saturating_duration_since(first).as_secs_f64();
            if secs > 0.0 {
                let _ = self
                    .tokens_per_s
                    .record((((t.count - 1) as f64) / secs).round().max(1.0) as u64);
            }
        }
    }

    pub fn merge(&mut self, o: Stats) {
        let _ = self.latency.add(&o.latency);
        let _ = self.ttfb.add(&o.ttfb);
        let _ = self.send_lag.add(&o.send_lag);
        let _ = self.ttft.add(&o.ttft);
        let _ = self.ttft_sent.add(&o.ttft_sent);
        let _ = self.itl.add(&o.itl);
        let _ = self.tokens_per_s.add(&o.tokens_per_s);
        self.tokens += o.tokens;
        self.ok += o.ok;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (i, b) in o.timeline.into_iter().enumerate() {
            let mine = self.bucket(i);
            let _ = mine.latency.add(&b.latency);
            mine.errors += b.errors;
        }
    }
}
