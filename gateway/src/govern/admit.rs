//! Admission and settlement. At admission every scope (global, model,
//! tenant, key) takes its share: a request slot, a GCRA cell, the tokens the
//! request may use (estimated prompt + `max_tokens`) and its maximum cost.
//! When the request ends, however it ends, the reservation is replaced by
//! the actual usage.

use std::sync::Arc;
use std::time::Duration;

use pingora_limits::inflight::Guard;

use super::budget::{period_id, Budget, Crossing, Price};
use super::directory::ScopeState;
use super::limits::{reset_in, window_id, Limits, DAY, MINUTE};
use crate::errors::GatewayError;

/// What a request asks for.
pub struct Ask {
    pub prompt_tokens: u64,
    pub max_tokens: u64,
    pub price: Option<Price>,
}

impl Ask {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.max_tokens
    }

    pub fn max_cost(&self) -> u64 {
        self.price
            .map_or(0, |p| p.cost(self.prompt_tokens, 0, self.max_tokens))
    }
}

/// One scope's limits and counters, and the budget that applies to it.
pub struct Scope<'a> {
    pub name: &'static str,
    pub limits: &'a Limits,
    pub state: &'a Arc<ScopeState>,
    pub budget: Option<&'a Arc<Budget>>,
}

struct Held {
    name: &'static str,
    state: Arc<ScopeState>,
    rps: Option<u64>,
    rpm: bool,
    tpm: bool,
    tpd: bool,
    budget: Option<Arc<Budget>>,
}

/// OpenAI-style `x-ratelimit-*` values of the tightest scope.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RateView {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// A request's reservation; settled (or released) exactly once.
pub struct Ticket {
    held: Vec<Held>,
    inflight: Vec<Guard>,
    minute: u64,
    day: u64,
    now_secs: u64,
    pub reserved_tokens: u64,
    /// Of `reserved_tokens`: the prompt estimate.
    pub reserved_prompt: u64,
    pub reserved_cost: u64,
    pub price: Option<Price>,
    pub requests: Option<RateView>,
    pub tokens: Option<RateView>,
    done: bool,
}

/// Which limit refused, for the error type (`requests` or `tokens`).
fn limited(kind: &'static str, scope: &str, what: String, wait: Duration) -> GatewayError {
    GatewayError::RateLimited {
        kind,
        message: format!(
            "Rate limit reached for {scope}: {what}. Try again in {}.",
            fmt_duration(wait)
        ),
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// Go-style short durations, as OpenAI's `x-ratelimit-reset-*` use.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

fn tighter(cur: &mut Option<RateView>, v: RateView) {
    if cur.is_none_or(|c| v.remaining < c.remaining) {
        *cur = Some(v);
    }
}

impl Ticket {
    /// Takes the request's share from every scope, or nothing at all.
    pub fn admit(
        scopes: &[Scope<'_>],
        inflight: &pingora_limits::inflight::Inflight,
        ask: &Ask,
        now: u64,
    ) -> Result<Ticket, GatewayError> {
        let mut t = Ticket {
            held: Vec::with_capacity(scopes.len()),
            inflight: Vec::new(),
            minute: window_id(now, MINUTE),
            day: window_id(now, DAY),
            now_secs: now / 1_000_000_000,
            reserved_tokens: ask.tokens(),
            reserved_prompt: ask.prompt_tokens,
            reserved_cost: ask.max_cost(),
            price: ask.price,
            requests: None,
            tokens: None,
            done: false,
        };
        for s in scopes {
            if let Err(e) = t.take(s, inflight, ask, now) {
                t.release();
                return Err(e);
            }
        }
        Ok(t)
    }

    fn take(
        &mut self,
        s: &Scope<'_>,
        inflight: &pingora_limits::inflight::Inflight,
        ask: &Ask,
        now: u64,
    ) -> Result<(), GatewayError> {
        let l = s.limits;
        let mut held = Held {
            name: s.name,
            state: s.state.clone(),
            rps: None,
            rpm: false,
            tpm: false,
            tpd: false,
            budget: None,
        };
        let push = |t: &mut Ticket, h: Held| t.held.push(h);
        if let Some(max) = l.concurrency {
            let (guard, n) = inflight.incr(s.state.tag, 1);
            if n > max as isize {
                drop(guard);
                push(self, held);
                return Err(limited(
                    "requests",
                    s.name,
                    format!("{max} requests in flight"),
                    Duration::from_secs(1),
                ));
            }
            self.inflight.push(guard);
        }
        if let Some((interval, tolerance)) = l.rps {
            if let Err(wait) = s.state.rps.admit(now, interval, tolerance) {
                push(self, held);
                return Err(limited(
                    "requests",
                    s.name,
                    format!("{} requests per second", l.rps_raw.unwrap_or(0)),
                    wait,
                ));
            }
            held.rps = Some(interval);
        }
        if let Some(rpm) = l.rpm {
            match s.state.rpm.take(self.minute, 1, rpm) {
                Ok(used) => {
                    held.rpm = true;
                    tighter(
                        &mut self.requests,
                        RateView {
                            limit: rpm,
                            remaining: rpm - used,
                            reset: reset_in(now, MINUTE),
                        },
                    );
                }
                Err(_) => {
                    push(self, held);
                    return Err(limited(
                        "requests",
                        s.name,
                        format!("{rpm} requests per minute"),
                        reset_in(now, MINUTE),
                    ));
                }
            }
        }
        let need = ask.tokens();
        for (limit, window, id, len, per) in [
            (l.tpm, &s.state.tpm, self.minute, MINUTE, "minute"),
            (l.tpd, &s.state.tpd, self.day, DAY, "day"),
        ] {
            let Some(limit) = limit else { continue };
            match window.take(id, need, limit) {
                Ok(used) => {
                    if per == "minute" {
                        held.tpm = true;
                        tighter(
                            &mut self.tokens,
                            RateView {
                                limit,
                                remaining: limit - used,
                                reset: reset_in(now, len),
                            },
                        );
                    } else {
                        held.tpd = true;
                    }
                }
                Err(used) => {
                    push(self, held);
                    let what = if need > limit {
                        format!("this request may use {need} tokens, more than the limit of {limit} per {per}")
                    } else {
                        format!(
                            "{limit} tokens per {per} ({used} in use, this request may use {need})"
                        )
                    };
                    return Err(limited("tokens", s.name, what, reset_in(now, len)));
                }
            }
        }
        if let Some(b) = s.budget {
            let period = period_id(b.period, self.now_secs);
            if let Err(left) = s.state.spend.reserve(b, period, self.reserved_cost) {
                push(self, held);
                return Err(GatewayError::BudgetExceeded(format!(
                    "The {} budget of {} USD ({:?}) is exhausted: {:.6} USD left, this request may cost up to {:.6} USD",
                    s.name,
                    b.usd,
                    b.period,
                    super::budget::nano_to_usd(left),
                    super::budget::nano_to_usd(self.reserved_cost),
                )));
            }
            held.budget = Some(b.clone());
        }
        push(self, held);
        Ok(())
    }

    /// Gives everything back: the request was refused.
    fn release(&mut self) {
        self.finish(0, 0, &mut |_, _| {}, true);
    }

    /// Replaces the reservation by actual usage; calls `alert` for every
    /// budget threshold crossed. Returns nothing: idempotent after the first call.
    pub fn settle(
        &mut self,
        tokens: u64,
        cost: u64,
        alert: &mut dyn FnMut(&'static str, Crossing),
    ) {
        self.finish(tokens, cost, alert, false);
    }

    fn finish(
        &mut self,
        tokens: u64,
        cost: u64,
        alert: &mut dyn FnMut(&'static str, Crossing),
        refused: bool,
    ) {
        if self.done {
            return;
        }
        self.done = true;
        self.inflight.clear();
        let now = super::limits::now_nanos();
        let (minute, day) = (window_id(now, MINUTE), window_id(now, DAY));
        for h in &self.held {
            if refused {
                if let Some(interval) = h.rps {
                    h.state.rps.undo(interval);
                }
                if h.rpm {
                    h.state.rpm.settle(self.minute, minute, 1, 0);
                }
            }
            if h.tpm {
                h.state
                    .tpm
                    .settle(self.minute, minute, self.reserved_tokens, tokens);
            }
            if h.tpd {
                h.state
                    .tpd
                    .settle(self.day, day, self.reserved_tokens, tokens);
            }
            if let Some(b) = &h.budget {
                let period = period_id(b.period, now / 1_000_000_000);
                for c in h.state.spend.settle(b, period, self.reserved_cost, cost) {
                    alert(h.name, c);
                }
            }
        }
    }
}

impl Drop for Ticket {
    /// A ticket never settled (a panic, a path that forgot) charges its reservation.
    fn drop(&mut self) {
        let (t, c) = (self.reserved_tokens, self.reserved_cost);
        self.finish(t, c, &mut |_, _| {}, false);
    }
}
