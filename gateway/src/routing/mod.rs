//! Upstream selection and resilience: which target of a model's pool gets
//! an attempt, given each target's health, and why none can.

pub mod balance;
pub mod checks;
pub mod health;
pub mod retry;
pub mod rules;
pub mod stats;

use health::{now_ms, InFlight};

use crate::snapshot::{Model, Target};

/// Why a pool has no target to offer right now.
#[derive(Debug, Clone, PartialEq)]
pub enum NoTarget {
    /// Every usable target asked for a pause; the shortest ends in `wait_ms`.
    Cooling { wait_ms: u64 },
    /// Every target's breaker is open; the first probe is due in `retry_ms`.
    Open { retry_ms: u64 },
    /// Every target is at its `max_in_flight`.
    Busy,
    /// No target can ever serve (e.g. a missing API key): the reasons.
    Unavailable(String),
}

/// Bit set of target indexes (pools hold at most 64 targets).
pub type Tried = u64;

pub const MAX_TARGETS: usize = 64;

impl Model {
    /// Picks a target for one attempt, preferring targets this request has
    /// not tried yet; a pool whose only usable targets were all tried offers
    /// them again.
    pub fn select(&self, tried: Tried) -> Result<(usize, InFlight), NoTarget> {
        let now = now_ms();
        let mut refused: Tried = 0;
        for avoid in [tried, 0] {
            loop {
                let usable = |i: usize| {
                    let t = &self.targets[i];
                    let bit = 1u64 << i;
                    (avoid | refused) & bit == 0
                        && t.provider.unavailable.is_none()
                        && t.health.cooling(now).is_none()
                        && t.health.eligible(now)
                        && t.max_in_flight.is_none_or(|m| t.health.in_flight() < m)
                };
                let Some(i) = self
                    .balancer
                    .pick(|i| &*self.targets[i].health, now, usable)
                else {
                    break;
                };
                match self.targets[i].health.acquire(now) {
                    Some(guard) => return Ok((i, guard)),
                    // Another request took the only half-open probe.
                    None => refused |= 1 << i,
                }
            }
        }
        Err(self.why_none(now))
    }

    fn why_none(&self, now: u64) -> NoTarget {
        let live: Vec<_> = self
            .targets
            .iter()
            .filter(|t| t.provider.unavailable.is_none())
            .collect();
        if live.is_empty() {
            let reasons: Vec<String> = self
                .targets
                .iter()
                .filter_map(|t| t.provider.unavailable.clone())
                .collect();
            return NoTarget::Unavailable(reasons.join("; "));
        }
        if let Some(wait_ms) = live.iter().filter_map(|t| t.health.cooling(now)).min() {
            if live
                .iter()
                .all(|t| t.health.cooling(now).is_some() || !t.health.eligible(now))
            {
                return NoTarget::Cooling { wait_ms };
            }
        }
        if live.iter().all(|t| !t.health.eligible(now)) {
            let next = live
                .iter()
                .map(|t| t.health.reopen_at())
                .min()
                .unwrap_or(now);
            return NoTarget::Open {
                retry_ms: next.saturating_sub(now).max(1),
            };
        }
        NoTarget::Busy
    }
}

impl Target {
    /// Counts an attempt and tells the target's health about it. A 429 is a
    /// failed attempt from a healthy upstream (it asked for a pause).
    pub fn record(&self, attempt_ok: bool, healthy: bool, ttfb: Option<std::time::Duration>) {
        if attempt_ok {
            self.counters.ok.inc();
        } else {
            self.counters.failed.inc();
        }
        if self.health.record(healthy, ttfb, now_ms()) {
            self.counters.ejections.inc();
        }
    }
}
