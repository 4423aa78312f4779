//! `sluice-bench`: closed-loop and open-loop HTTP/1.1 load with HDR latency.
//!
//! Open loop measures latency from each request's *intended* send time, so a
//! stalled server cannot hide queueing delay (coordinated omission).

mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{build_request, ClientError, Conn};
pub use report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Target URL, e.g. http://127.0.0.1:8080/v1/chat/completions
    #[arg(long)]
    pub url: String,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 32)]
    pub connections: usize,
    /// Run time, e.g. 10s (ignored when --requests is set).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many requests in total.
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Open loop at this many requests per second; closed loop when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Request body file (POST); GET without it.
    #[arg(long)]
    pub body: Option<std::path::PathBuf>,
    /// Extra request header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Warm-up time excluded from the results.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Worker threads for the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Write the JSON report here as well as to stdout.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num.parse().map_err(|_| format!("bad duration '{s}'"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in '{s}' (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
}

fn target(args: &BenchArgs) -> Result<Target, String> {
    let rest = args
        .url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .map_err(|e| format!("resolve {hostport}: {e}"))?
        .next()
        .ok_or("no address")?;
    let body = match &args.body {
        Some(p) => std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()))?,
        None => Vec::new(),
    };
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').ok_or(format!("bad header '{h}'"))?;
        headers.push((k.trim(), v.trim()));
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("content-type", "application/json"));
    }
    let method = if body.is_empty() { "GET" } else { "POST" };
    Ok(Target {
        addr,
        request: build_request(method, path, hostport, &headers, &body),
    })
}

/// Per-connection results, merged at the end.
struct Stats {
    latency: Histogram<u64>,
    ttfb: Histogram<u64>,
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn new(proto: &Histogram<u64>) -> Stats {
        Stats {
            latency: proto.clone(),
            ttfb: proto.clone(),
            ok: 0,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, o: Stats) {
        let _ = self.latency.add(&o.latency);
        let _ = self.ttfb.add(&o.ttfb);
        self.ok += o.ok;
        for (k, v) in o.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

struct Plan {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    budget: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Open loop: this connection's send interval and offset.
    interval: Option<(Duration, Duration)>,
}

impl Plan {
    fn take_ticket(&self) -> bool {
        match &self.budget {
            Some(b) => b
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                )
                .is_ok(),
            None => true,
        }
    }
}

async fn worker(target: Arc<Target>, plan: Plan, mut stats: Stats) -> Stats {
    let mut conn: Option<Conn> = None;
    let mut k: u32 = 0;
    loop {
        let intended = match plan.interval {
            Some((every, offset)) => {
                let t = plan.start + offset + every * k;
                k += 1;
                if t >= plan.end {
                    break;
                }
                tokio::time::sleep_until(t.into()).await;
                t
            }
            None => Instant::now(),
        };
        if intended >= plan.end || !plan.take_ticket() {
            break;
        }
        let result = send_one(&target, &mut conn).await;
        let done = Instant::now();
        if intended < plan.measure_from {
            continue;
        }
        match result {
            Ok((status, first_byte)) => {
                *stats.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    stats.ok += 1;
                } else {
                    *stats.errors.entry(status_class(status)).or_default() += 1;
                }
                let _ = stats.latency.record(micros(done - intended));
                if let Some(fb) = first_byte {
                    let _ = stats
                        .ttfb
                        .record(micros(fb.saturating_duration_since(intended)));
                }
            }
            Err(e) => {
                *stats.errors.entry(e.kind()).or_default() += 1;
                let _ = stats.latency.record(micros(done - intended));
            }
        }
    }
    stats
}

async fn send_one(
    target: &Target,
    conn: &mut Option<Conn>,
) -> Result<(u16, Option<Instant>), ClientError> {
    if conn.is_none() {
        *conn = Some(Conn::connect(target.addr).await?);
    }
    let Some(c) = conn.as_mut() else {
        return Err(ClientError::Closed);
    };
    match c.send(&target.request).await {
        Ok(r) => {
            if !r.keep_alive {
                *conn = None;
            }
            Ok((r.status, r.first_byte))
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

fn status_class(s: u16) -> &'static str {
    match s {
        400..=499 => "status_4xx",
        500..=599 => "status_5xx",
        _ => "status_other",
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Runs the load described by `args` on the current runtime.
pub async fn run(args: &BenchArgs) -> Result<Report, String> {
    let target = Arc::new(target(args)?);
    let conns = args.connections.max(1);
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start
        + if args.requests.is_some() {
            Duration::ZERO
        } else {
            args.warmup
        };
    let end = match args.requests {
        Some(_) => start + Duration::from_secs(3600),
        None => measure_from + args.duration,
    };
    let proto = Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let budget = args
        .requests
        .map(|n| Arc::new(std::sync::atomic::AtomicU64::new(n)));
    let mut handles = Vec::with_capacity(conns);
    for i in 0..conns {
        let interval = args.rate.filter(|r| *r > 0.0).map(|rate| {
            let every = Duration::from_secs_f64(conns as f64 / rate);
            (every, every.mul_f64(i as f64 / conns as f64))
        });
        let plan = Plan {
            start,
            measure_from,
            end,
            budget: budget.clone(),
            interval,
        };
        handles.push(tokio::spawn(worker(
            target.clone(),
            plan,
            Stats::new(&proto),
        )));
    }
    let mut total = Stats::new(&proto);
    for h in handles {
        if let Ok(s) = h.await {
            total.merge(s);
        }
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    Ok(Report::new(
        args,
        &total.latency,
        &total.ttfb,
        total.ok,
        total.statuses,
        total.errors,
        elapsed,
    ))
}
