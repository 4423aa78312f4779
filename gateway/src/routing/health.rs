//! Per-target health: requests in flight, a time-to-first-byte estimate and
//! a circuit breaker. All atomics: every worker thread reads and updates them
//! on the request path without a lock. Counts in the error-rate window are
//! approximate under races (a bucket reset may drop a concurrent increment),
//! which a breaker tolerates.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since the process's first call, the clock of all health state.
pub fn now_ms() -> u64 {
    EPOCH.elapsed().as_millis() as u64
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Off: the target always takes traffic (health checks still report).
    pub enabled: bool,
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// Failure ratio over `window` that opens it, once `min_requests` were seen.
    pub error_rate: f64,
    pub min_requests: u32,
    pub window: Duration,
    /// Time open before one probe request is let through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failures: 5,
            error_rate: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    fn from_u8(v: u8) -> BreakerState {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

const BUCKETS: usize = 10;

#[derive(Default)]
struct Bucket {
    slot: AtomicU64,
    ok: AtomicU32,
    err: AtomicU32,
}

/// Half-life of the latency estimate of a target that gets no traffic, so a
/// target once slow is tried again after a while.
const DECAY_HALF_LIFE_MS: f64 = 5_000.0;
/// Weight of a new sample in the estimate.
const ALPHA: f64 = 0.3;
/// Cap of the estimate (µs): errors push it up, never to infinity.
const MAX_LATENCY_US: f64 = 60e6;
/// Longest pause a `Retry-After` can impose on a target (ms).
const MAX_HOLD_OFF_MS: u64 = 60_000;

pub struct Health {
    cfg: BreakerConfig,
    in_flight: AtomicU32,
    /// EWMA of time to first byte in µs, as `f64` bits; 0 before any sample.
    ewma_us: AtomicU64,
    ewma_at: AtomicU64,
    consecutive: AtomicU32,
    state: AtomicU8,
    opened_at: AtomicU64,
    /// The one request allowed through while half-open is under way.
    probing: AtomicBool,
    /// Which probe holds `probing`, so a stale guard never frees a newer one's slot.
    probe_gen: AtomicU64,
    window: [Bucket; BUCKETS],
    ejections: AtomicU64,
    /// No new request before this time (ms): the upstream asked for a pause.
    not_before: AtomicU64,
}

/// Counts a request in flight until dropped; a half-open probe that ends
/// without a verdict (the client left) frees the probe slot.
pub struct InFlight {
    health: Arc<Health>,
    /// The probe generation this request holds, if it is the half-open probe.
    probe: Option<u64>,
}

impl InFlight {
    pub fn health(&self) -> &Health {
        &self.health
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.health.in_flight.fetch_sub(1, Relaxed);
        if self.probe == Some(self.health.probe_gen.load(Relaxed)) {
            self.health.probing.store(false, Relaxed);
        }
    }
}

impl Health {
    pub fn new(cfg: BreakerConfig) -> Health {
        Health {
            cfg,
            in_flight: AtomicU32::new(0),
            ewma_us: AtomicU64::new(0),
            ewma_at: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            state: AtomicU8::new(BreakerState::Closed as u8),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            probe_gen: AtomicU64::new(0),
            window: Default::default(),
            ejections: AtomicU64::new(0),
            not_before: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Relaxed))
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    pub fn ejections(&self) -> u64 {
        self.ejections.load(Relaxed)
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive.load(Relaxed)
    }

    /// The upstream asked for a pause (a 429's `Retry-After`), bounded.
    pub fn hold_off(&self, now: u64, pause_ms: u64) {
        let until = now.saturating_add(pause_ms.min(MAX_HOLD_OFF_MS));
        self.not_before.fetch_max(until, Relaxed);
    }

    /// How long (ms) this target still asked to be left alone, if at all.
    pub fn cooling(&self, now: u64) -> Option<u64> {
        let nb = self.not_before.load(Relaxed);
        (nb > now).then(|| nb - now)
    }

    /// Whether a request may be sent now (without claiming the half-open probe).
    pub fn eligible(&self, now: u64) -> bool {
        if !self.cfg.enabled {
            return true;
        }
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => now >= self.reopen_at() && !self.probing.load(Relaxed),
            BreakerState::HalfOpen => !self.probing.load(Relaxed),
        }
    }

    /// When an open breaker lets its next probe through (ms, `now_ms` clock).
    pub fn reopen_at(&self) -> u64 {
        self.opened_at.load(Relaxed) + self.cfg.cooldown.as_millis() as u64
    }

    /// Claims the right to send one request; false if another thread just
    /// took the only half-open probe.
    pub fn acquire(self: &Arc<Self>, now: u64) -> Option<InFlight> {
        let mut probe = None;
        if self.cfg.enabled && self.state() != BreakerState::Closed {
            if !self.eligible(now) {
                return None;
            }
            if self
                .probing
                .compare_exchange(false, true, Relaxed, Relaxed)
                .is_err()
            {
                return None;
            }
            self.state.store(BreakerState::HalfOpen as u8, Relaxed);
            probe = Some(self.probe_gen.fetch_add(1, Relaxed) + 1);
        }
        self.in_flight.fetch_add(1, Relaxed);
        Some(InFlight {
            health: self.clone(),
            probe,
        })
    }

    /// A request finished: `ttfb` when the upstream answered well. True when
    /// this failure ejected the target.
    pub fn record(&self, success: bool, ttfb: Option<Duration>, now: u64) -> bool {
        let bucket = self.bucket(now);
        if success {
            bucket.ok.fetch_add(1, Relaxed);
            self.consecutive.store(0, Relaxed);
            if let Some(t) = ttfb {
                self.observe(t.as_secs_f64() * 1e6, now);
            }
            // An open breaker ignores late answers to requests sent before it
            // opened; once half-open, a success (the probe's, usually) closes it.
            if self.state() == BreakerState::HalfOpen {
                self.close();
            }
            return false;
        }
        bucket.err.fetch_add(1, Relaxed);
        let n = self.consecutive.fetch_add(1, Relaxed) + 1;
        // An error counts as a slow answer for the latency policy.
        let penalty = (self.latency_us(now) * 4.0).clamp(100_000.0, MAX_LATENCY_US);
        self.observe(penalty, now);
        if !self.cfg.enabled {
            return false;
        }
        match self.state() {
            BreakerState::HalfOpen => {
                self.open(now);
                false
            }
            BreakerState::Open => false,
            BreakerState::Closed => {
                let (ok, err) = self.window_counts(now);
                let total = ok + err;
                let rate_trips = total >= self.cfg.min_requests
                    && f64::from(err) >= self.cfg.error_rate * f64::from(total);
                let trips = n >= self.cfg.failures || rate_trips;
                if trips {
                    self.open(now);
                }
                trips
            }
        }
    }

    /// An active health check failed: eject at once. True when this ejected it.
    pub fn check_failed(&self, now: u64) -> bool {
        let closed = self.state() == BreakerState::Closed;
        if self.cfg.enabled {
            self.open(now);
        }
        self.cfg.enabled && closed
    }

    /// An active health check passed: the check was the probe, so an
    /// ejected target takes traffic again.
    pub fn check_passed(&self) {
        if self.state() != BreakerState::Closed {
            self.close();
        }
        self.not_before.store(0, Relaxed);
    }

    fn open(&self, now: u64) {
        self.opened_at.store(now, Relaxed);
        let was = self.state.swap(BreakerState::Open as u8, Relaxed);
        self.probing.store(false, Relaxed);
        if was == BreakerState::Closed as u8 {
            self.ejections.fetch_add(1, Relaxed);
        }
    }

    fn close(&self) {
        self.state.store(BreakerState::Closed as u8, Relaxed);
        self.probing.store(false, Relaxed);
        self.consecutive.store(0, Relaxed);
        for b in &self.window {
            b.ok.store(0, Relaxed);
            b.err.store(0, Relaxed);
        }
    }

    fn bucket_ms(&self) -> u64 {
        (self.cfg.window.as_millis() as u64 / BUCKETS as u64).max(1)
    }

    fn bucket(&self, now: u64) -> &Bucket {
        let slot = now / self.bucket_ms();
        let b = &self.window[(slot as usize) % BUCKETS];
        let old = b.slot.load(Relaxed);
        if old != slot && b.slot.compare_exchange(old, slot, Relaxed, Relaxed).is_ok() {
            b.ok.store(0, Relaxed);
            b.err.store(0, Relaxed);
        }
        b
    }

    /// Successes and failures within the window.
    pub fn window_counts(&self, now: u64) -> (u32, u32) {
        let current = now / self.bucket_ms();
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        self.window
            .iter()
            .filter(|b| (oldest..=current).contains(&b.slot.load(Relaxed)))
            .fold((0, 0), |(ok, err), b| {
                (ok + b.ok.load(Relaxed), err + b.err.load(Relaxed))
            })
    }

    fn ewma_raw(&self) -> f64 {
        f64::from_bits(self.ewma_us.load(Relaxed))
    }

    fn observe(&self, sample_us: f64, now: u64) {
        // From the decayed estimate: a target that recovered is not held to
        // its old samples; bounded and finite whatever the inputs.
        let sample_us = sample_us.clamp(0.0, MAX_LATENCY_US);
        let old = self.latency_us(now);
        let new = if old == 0.0 {
            sample_us
        } else {
            old + ALPHA * (sample_us - old)
        };
        self.ewma_us.store(new.to_bits(), Relaxed);
        self.ewma_at.store(now, Relaxed);
    }

    /// The latency estimate in µs, decayed toward zero while no sample
    /// arrives; 0 for a target never measured (so it gets tried).
    pub fn latency_us(&self, now: u64) -> f64 {
        let age = now.saturating_sub(self.ewma_at.load(Relaxed)) as f64;
        self.ewma_raw() * (-age / DECAY_HALF_LIFE_MS).exp2()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            failures: 3,
            error_rate: 0.5,
            min_requests: 10,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_cooldown() {
        let h = Arc::new(Health::new(cfg()));
        for _ in 0..2 {
            h.record(false, None, 1_000);
        }
        assert_eq!(h.state(), BreakerState::Closed);
        h.record(false, None, 1_000);
        assert_eq!(h.state(), BreakerState::Open);
        assert!(!h.eligible(3_000));
        assert!(h.acquire(3_000).is_none());
        // After the cool-down exactly one probe goes through.
        let probe = h.acquire(6_000).unwrap();
        assert_eq!(h.state(), BreakerState::HalfOpen);
        assert!(h.acquire(6_000).is_none());
        drop(probe);
        h.record(false, None, 6_100);
        assert_eq!(h.state(), BreakerState::Open);
        let _probe = h.acquire(11_200).unwrap();
        h.record(true, Some(Duration::from_millis(1)), 11_300);
        assert_eq!(h.state(), BreakerState::Closed);
        assert!(h.eligible(11_300));
        assert_eq!(h.ejections(), 1);
    }

    #[test]
    fn a_probe_without_a_verdict_frees_its_slot() {
        let h = Arc::new(Health::new(cfg()));
        for _ in 0..3 {
            h.record(false, None, 0);
        }
        drop(h.acquire(5_000).unwrap());
        assert_eq!(h.state(), BreakerState::HalfOpen);
        assert!(h.acquire(5_000).is_some());
        assert_eq!(h.in_flight(), 0);
    }

    #[test]
    fn a_stale_probe_never_frees_a_newer_probes_slot() {
        let h = Arc::new(Health::new(cfg()));
        for _ in 0..3 {
            h.record(false, None, 0);
        }
        let old = h.acquire(5_000).unwrap();
        // Its verdict arrives (a failure) before the guard goes away.
        h.record(false, None, 5_100);
        let new = h.acquire(10_200).unwrap();
        drop(old);
        assert!(h.acquire(10_200).is_none(), "two probes at once");
        drop(new);
        assert!(h.acquire(10_200).is_some());
    }

    #[test]
    fn opens_on_error_rate_over_the_window() {
        let h = Health::new(cfg());
        for i in 0..20 {
            // Alternate so the consecutive count never reaches 3.
            h.record(i % 2 == 0, None, 2_000);
        }
        assert_eq!(h.state(), BreakerState::Open);
        // Old samples leave the window.
        let h = Health::new(cfg());
        for _ in 0..9 {
            h.record(true, None, 0);
        }
        for i in 0..4 {
            h.record(i % 2 == 0, None, 30_000);
        }
        assert_eq!(h.state(), BreakerState::Closed);
        assert_eq!(h.window_counts(30_000), (2, 2));
    }

    #[test]
    fn latency_estimate_follows_samples_and_decays() {
        let h = Health::new(cfg());
        assert_eq!(h.latency_us(0), 0.0);
        h.record(true, Some(Duration::from_millis(10)), 0);
        assert!((h.latency_us(0) - 10_000.0).abs() < 1.0);
        h.record(true, Some(Duration::from_millis(20)), 0);
        assert!(h.latency_us(0) > 10_000.0);
        let later = h.latency_us(5_000);
        assert!((later - h.latency_us(0) / 2.0).abs() < 1.0);
        // Errors raise it, boundedly; it never turns infinite or NaN.
        let h = Health::new(BreakerConfig {
            enabled: false,
            ..cfg()
        });
        for _ in 0..2_000 {
            h.record(false, None, 0);
        }
        let v = h.latency_us(0);
        assert!(v.is_finite() && v <= MAX_LATENCY_US, "{v}");
        h.record(true, Some(Duration::from_millis(1)), 0);
        assert!(h.latency_us(0).is_finite());
    }

    #[test]
    fn disabled_breaker_never_ejects() {
        let h = Arc::new(Health::new(BreakerConfig {
            enabled: false,
            ..cfg()
        }));
        for _ in 0..10 {
            h.record(false, None, 0);
        }
        assert!(h.eligible(0));
        assert!(h.acquire(0).is_some());
    }
}
