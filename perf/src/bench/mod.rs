//! `sluice-bench`: an HTTP/1.1 keep-alive load generator for LLM APIs.
//!
//! Closed loop (`-c N` connections, each sending as soon as it has its
//! answer) or open loop (`--rate R` or `--ramp R:D,…`, constant or Poisson
//! arrivals). Open loop measures latency from each request's *intended*
//! send time, so a stalled server cannot hide queueing delay behind the
//! sends it delayed (coordinated omission). Streams are timed token by
//! token: time to first token, inter-token gaps, output tokens per second.

mod h2;
mod html;
mod mix;
mod progress;
mod report;
mod schedule;
mod stats;
mod stream;
mod timer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{ClientError, Conn};
pub use html::render as html;
use mix::{Base, Mix};
use progress::Progress;
pub use report::Report;
pub use schedule::{Arrivals, Schedule};
use stats::{Protos, Stats};
use stream::Tokens;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Target URL, e.g. http://127.0.0.1:8080/v1/chat/completions
    #[arg(long)]
    pub url: String,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 32)]
    pub connections: usize,
    /// HTTP/2 (cleartext, prior knowledge) instead of HTTP/1.1.
    #[arg(long)]
    pub http2: bool,
    /// With --http2: concurrent streams per connection.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Run time after the warm-up, e.g. 10s (ignored with --requests or --ramp).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many requests in total (no warm-up).
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Open loop at this many requests per second; closed loop when absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop in steps of rate, e.g. `1000:10s,2000:10s`; the warm-up
    /// runs at the first step's rate.
    #[arg(long, conflicts_with = "rate")]
    pub ramp: Option<String>,
    /// How open-loop sends are spaced.
    #[arg(long, value_enum, default_value_t = Arrivals::Constant)]
    pub arrivals: Arrivals,
    /// Request body file (POST); GET without it.
    #[arg(long, conflicts_with = "mix")]
    pub body: Option<std::path::PathBuf>,
    /// A JSONL file of requests drawn by weight: each line a body, or
    /// {"body":…, "path":…, "weight":…, "headers":{…}}.
    #[arg(long)]
    pub mix: Option<std::path::PathBuf>,
    /// Extra request header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Warm-up time excluded from the results.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// A request that takes longer counts as a `timeout` error.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Worker threads for the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Write the JSON report here as well as to stdout.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
    /// No progress line on standard error.
    #[arg(short = 'q', long)]
    pub quiet: bool,
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

/// What every connection shares.
struct Shared {
    addr: SocketAddr,
    mix: Mix,
    progress: Arc<Progress>,
    timer: timer::FineTimer,
}

fn shared(args: &BenchArgs) -> Result<Shared, String> {
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
    let mut headers = Vec::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').ok_or(format!("bad header '{h}'"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let base = Base {
        hostport,
        path,
        headers: &headers,
    };
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
    let requests = match (&args.mix, &args.body) {
        (Some(p), _) => mix::parse_jsonl(&String::from_utf8_lossy(&read(p)?), &base)?,
        (None, Some(p)) => vec![base.request(path, &[], &read(p)?, 1.0)],
        (None, None) => vec![base.request(path, &[], b"", 1.0)],
    };
    Ok(Shared {
        addr,
        mix: Mix::new(requests)?,
        progress: Arc::new(Progress::default()),
        timer: timer::FineTimer::start(),
    })
}

struct Plan {
    index: usize,
    conns: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    budget: Option<Arc<AtomicU64>>,
    open: Option<(Arc<Schedule>, Arrivals)>,
    timeout: Duration,
}

impl Plan {
    fn take_ticket(&self) -> bool {
        match &self.budget {
            Some(b) => b
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
            None => true,
        }
    }

    /// The first send of an open-loop connection: spread over the first gap.
    fn first_send(&self, rng: &mut fastrand::Rng) -> Option<Instant> {
        let (schedule, arrivals) = self.open.as_ref()?;
        let gap = schedule.next_gap(Duration::ZERO, self.conns, *arrivals, rng)?;
        Some(match arrivals {
            Arrivals::Constant => self.start + gap.mul_f64(self.index as f64 / self.conns as f64),
            Arrivals::Poisson => self.start + gap,
        })
    }

    fn next_send(&self, after: Instant, rng: &mut fastrand::Rng) -> Option<Instant> {
        let (schedule, arrivals) = self.open.as_ref()?;
        let gap = schedule.next_gap(after - self.start, self.conns, *arrivals, rng)?;
        Some(after + gap)
    }
}

/// One answer, as the bench needs it.
pub(crate) struct Answer {
    pub status: u16,
    pub first_byte: Option<Instant>,
    pub stream: bool,
}

/// How a worker sends: its own HTTP/1.1 connection, or a stream of a
/// shared HTTP/2 connection.
enum Transport {
    H1(Option<Conn>),
    H2(Arc<h2::H2Conn>),
}

/// How late past the run's end a due request may still leave: the timer
/// works in milliseconds.
const SEND_GRACE: Duration = Duration::from_millis(10);

async fn worker(
    shared: Arc<Shared>,
    plan: Plan,
    mut transport: Transport,
    mut stats: Stats,
) -> Stats {
    let mut rng = fastrand::Rng::with_seed(0x5eed + plan.index as u64);
    let mut next = plan.first_send(&mut rng);
    tokio::time::sleep_until(plan.start.into()).await;
    loop {
        let intended = match (&plan.open, next) {
            (Some(_), Some(t)) => {
                shared.timer.sleep_until(t).await;
                next = plan.next_send(t, &mut rng);
                t
            }
            (Some(_), None) => break,
            (None, _) => Instant::now(),
        };
        if intended >= plan.end || !plan.take_ticket() {
            break;
        }
        // Open loop: a generator behind its schedule stops at the end all
        // the same (give or take the timer's millisecond); what was due and
        // never sent counts against the rate.
        if plan.open.is_some() && Instant::now() >= plan.end + SEND_GRACE {
            let mut due = Some(intended);
            while let Some(t) = due.filter(|&t| t < plan.end) {
                if t >= plan.measure_from {
                    *stats.errors.entry("unsent").or_default() += 1;
                }
                due = plan.next_send(t, &mut rng);
            }
            break;
        }
        if plan.open.is_some() && intended >= plan.measure_from {
            let _ = stats.send_lag.record(stats::micros(intended.elapsed()));
        }
        let request = shared.mix.pick(&mut rng);
        let mut tokens = Tokens::default();
        let left = plan.open.is_some().then(Instant::now);
        let sent = async {
            match &mut transport {
                Transport::H1(conn) => {
                    send_h1(shared.addr, conn, &request.bytes, &mut tokens).await
                }
                Transport::H2(conn) => conn.send(request, &mut tokens).await,
            }
        };
        let result = match tokio::time::timeout(plan.timeout, sent).await {
            Ok(r) => r,
            Err(_) => {
                if let Transport::H1(conn) = &mut transport {
                    *conn = None;
                }
                Err("timeout")
            }
        };
        let done = Instant::now();
        let error = match &result {
            Ok(a) if !(200..300).contains(&a.status) => Some(status_class(a.status)),
            Ok(a) if a.stream && tokens.error => Some("stream_error"),
            Ok(a) if a.stream && !tokens.complete() => Some("malformed_stream"),
            Ok(_) => None,
            Err(kind) => Some(*kind),
        };
        shared.progress.count(error.is_some());
        if intended < plan.measure_from {
            continue;
        }
        let second = intended
            .saturating_duration_since(plan.measure_from)
            .as_secs() as usize;
        stats.done(second, done - intended, error);
        if let Ok(a) = result {
            *stats.statuses.entry(a.status).or_default() += 1;
            if error.is_none() {
                stats.ok += 1;
            }
            if let Some(fb) = a.first_byte {
                let _ = stats
                    .ttfb
                    .record(stats::micros(fb.saturating_duration_since(intended)));
            }
            if a.stream {
                stats.stream(&tokens, intended, left);
            }
        }
    }
    stats
}

async fn send_h1(
    addr: SocketAddr,
    conn: &mut Option<Conn>,
    request: &[u8],
    tokens: &mut Tokens,
) -> Result<Answer, &'static str> {
    if conn.is_none() {
        *conn = Some(Conn::connect(addr).await.map_err(|e| e.kind())?);
    }
    let Some(c) = conn.as_mut() else {
        return Err(ClientError::Closed.kind());
    };
    match c
        .send_with(request, |piece| tokens.feed(piece, Instant::now()))
        .await
    {
        Ok(r) => {
            if !r.keep_alive {
                *conn = None;
            }
            let stream = r
                .header("content-type")
                .is_some_and(|v| v.starts_with("text/event-stream"));
            Ok(Answer {
                status: r.status,
                first_byte: r.first_byte,
                stream,
            })
        }
        Err(e) => {
            *conn = None;
            Err(e.kind())
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

/// Runs the load described by `args` on the current runtime.
pub async fn run(args: &BenchArgs) -> Result<Report, String> {
    let shared = Arc::new(shared(args)?);
    let conns = args.connections.max(1);
    let warmup = if args.requests.is_some() {
        Duration::ZERO
    } else {
        args.warmup
    };
    let schedule = match (&args.ramp, args.rate) {
        (Some(r), _) => {
            let ramp = Schedule::parse_ramp(r)?;
            let mut steps = vec![(ramp.steps[0].0, warmup)];
            steps.extend(ramp.steps);
            Some(Schedule { steps })
        }
        (None, Some(rate)) if rate > 0.0 && rate.is_finite() => {
            Some(Schedule::constant(rate, warmup + args.duration))
        }
        (None, Some(_)) => return Err("--rate must be a positive number".into()),
        (None, None) => None,
    };
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + warmup;
    let end = match (&schedule, args.requests) {
        (Some(s), _) => start + s.total(),
        (None, Some(_)) => start + Duration::from_secs(24 * 3600),
        (None, None) => measure_from + args.duration,
    };
    let protos = Protos::new()?;
    let budget = args.requests.map(|n| Arc::new(AtomicU64::new(n)));
    let schedule = schedule.map(Arc::new);
    let ticker = (!args.quiet).then(|| {
        tokio::spawn(progress::report(
            shared.progress.clone(),
            start,
            measure_from,
        ))
    });
    // Over HTTP/2 every connection carries `streams` workers.
    let per_conn = if args.http2 { args.streams.max(1) } else { 1 };
    let workers = conns * per_conn;
    let h2_conns: Vec<Arc<h2::H2Conn>> = (0..if args.http2 { conns } else { 0 })
        .map(|_| Arc::new(h2::H2Conn::new(shared.addr)))
        .collect();
    let mut handles = Vec::with_capacity(workers);
    for index in 0..workers {
        let transport = match h2_conns.get(index / per_conn) {
            Some(c) => Transport::H2(c.clone()),
            None => Transport::H1(None),
        };
        let plan = Plan {
            index,
            conns: workers,
            start,
            measure_from,
            end,
            budget: budget.clone(),
            open: schedule.clone().map(|s| (s, args.arrivals)),
            timeout: args.timeout,
        };
        handles.push(tokio::spawn(worker(
            shared.clone(),
            plan,
            transport,
            Stats::new(&protos),
        )));
    }
    let mut total = Stats::new(&protos);
    for h in handles {
        if let Ok(s) = h.await {
            total.merge(s);
        }
    }
    if let Some(t) = ticker {
        t.abort();
    }
    // Over the schedule or the duration, not until the last request in
    // flight at its end came back: that tail would lower the rate.
    let elapsed = match args.requests {
        Some(_) => Instant::now().saturating_duration_since(measure_from),
        None => end.saturating_duration_since(measure_from),
    };
    let mode = match (&args.ramp, args.rate) {
        (Some(_), _) => "ramp",
        (None, Some(_)) => "open",
        (None, None) => "closed",
    };
    let shape = report::Shape {
        url: args.url.clone(),
        mode,
        arrivals: (mode != "closed").then_some(match args.arrivals {
            Arrivals::Constant => "constant",
            Arrivals::Poisson => "poisson",
        }),
        protocol: if args.http2 { "h2" } else { "http/1.1" },
        connections: conns,
        streams_per_connection: per_conn,
        target_rate: args.rate,
    };
    Ok(Report::new(shape, &total, elapsed.as_secs_f64()))
}
