//! Upstream selection and resilience: which target of a model's pool gets
//! an attempt, given each target's health, and why none can.

pub mod balance;
pub mod checks;
pub mod health;
pub mod retry;
pub mod rules;
pub mod stats;

use health::{now_ms, InFlight};

use crate::errors::GatewayError;
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

impl NoTarget {
    /// The client's answer when `pool` (a model, or a passthrough prefix)
    /// has no target to offer.
    pub fn into_error(self, pool: &str) -> GatewayError {
        let secs = |ms: u64| ms.div_ceil(1000).max(1);
        match self {
            NoTarget::Unavailable(reasons) => {
                GatewayError::ModelUnavailable(format!("'{pool}' is unavailable: {reasons}"))
            }
            NoTarget::Open { retry_ms } => GatewayError::NoTarget {
                message: format!(
                    "Every upstream of '{pool}' is failing and has been taken out of rotation; retry later"
                ),
                retry_after: secs(retry_ms),
            },
            NoTarget::Cooling { wait_ms } => GatewayError::NoTarget {
                message: format!(
                    "Every upstream of '{pool}' asked for a pause (rate limited); retry later"
                ),
                retry_after: secs(wait_ms),
            },
            NoTarget::Busy => GatewayError::NoTarget {
                message: format!("Every upstream of '{pool}' is at capacity"),
                retry_after: 1,
            },
        }
    }
}

/// Bit set of target indexes (pools hold at most 64 targets).
pub type Tried = u64;

pub const MAX_TARGETS: usize = 64;

impl Target {
    /// Whether this target may take a new request now (breaker, pause,
    /// capacity and credentials permitting).
    fn usable(&self, now: u64) -> bool {
        self.provider.unavailable.is_none()
            && self.health.cooling(now).is_none()
            && self.health.eligible(now)
            && self
                .max_in_flight
                .is_none_or(|m| self.health.in_flight() < m)
    }
}

impl Model {
    /// Picks a target for one attempt, preferring targets this request has
    /// not tried yet; a pool whose only usable targets were all tried offers
    /// them again.
    pub fn select(&self, tried: Tried) -> Result<(usize, InFlight), NoTarget> {
        let now = now_ms();
        let mut refused: Tried = 0;
        for avoid in [tried, 0] {
            loop {
                let usable =
                    |i: usize| (avoid | refused) & (1u64 << i) == 0 && self.targets[i].usable(now);
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

    /// Whether a target this request has not tried could take it now.
    pub fn untried_left(&self, tried: Tried) -> bool {
        let now = now_ms();
        (0..self.targets.len()).any(|i| tried & (1u64 << i) == 0 && self.targets[i].usable(now))
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
