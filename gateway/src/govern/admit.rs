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
use super::shared::Kind;
use crate::errors::GatewayError;

/// What a request asks for.
pub struct Ask {
    pub prompt_tokens: u64,
    pub max_tokens: u64,
    pub price: Option<Price>,
}

impl Ask {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.max_tokens)
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
    mode: Mode,
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
        mode: Mode,
    ) -> Result<Ticket, GatewayError> {
        let leased = mode == Mode::Leased;
        let mut t = Ticket {
            mode,
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
            if let Err(e) = t.take(s, inflight, ask, now, leased) {
                t.refuse();
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
        leased: bool,
    ) -> Result<(), GatewayError> {
        let l = s.limits;
        // With a shared store, only what this instance leased may be used
        // here; `remaining` is what the store had left at the last lease
        // plus what is left of this instance's lease.
        let lease = &s.state.leased;
        let cap = |held: &super::limits::Window, id: u64, limit: u64| {
            if leased {
                limit.min(held.used(id))
            } else {
                limit
            }
        };
        let remaining = |seen: &super::limits::Window, id: u64, limit: u64, cap: u64, used: u64| {
            if leased {
                limit.saturating_sub(seen.used(id)) + cap.saturating_sub(used)
            } else {
                limit.saturating_sub(used)
            }
        };
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
            let c = cap(&lease.rpm, self.minute, rpm);
            match s.state.rpm.take(self.minute, 1, c) {
                Ok(used) => {
                    held.rpm = true;
                    tighter(
                        &mut self.requests,
                        RateView {
                            limit: rpm,
                            remaining: remaining(&lease.rpm_seen, self.minute, rpm, c, used),
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
        for (limit, window, held_lease, id, len, per) in [
            (
                l.tpm,
                &s.state.tpm,
                &lease.tpm,
                self.minute,
                MINUTE,
                "minute",
            ),
            (l.tpd, &s.state.tpd, &lease.tpd, self.day, DAY, "day"),
        ] {
            let Some(limit) = limit else { continue };
            let c = cap(held_lease, id, limit);
            match window.take(id, need, c) {
                Ok(used) => {
                    if per == "minute" {
                        held.tpm = true;
                        tighter(
                            &mut self.tokens,
                            RateView {
                                limit,
                                remaining: remaining(&lease.tpm_seen, id, limit, c, used),
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
            if let Err(left) = s.state.spend.reserve(b, period, self.reserved_cost, leased) {
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

    /// Gives everything back: the request was refused (at admission, or
    /// after it but before it went anywhere).
    pub fn refuse(&mut self) {
        self.finish(0, 0, &mut NoOne, true);
    }

    /// Replaces the reservation by actual usage; tells `to` what the
    /// store and the alerts must hear of. Idempotent after the first call.
    pub fn settle(&mut self, tokens: u64, cost: u64, to: &mut dyn Settled) {
        self.finish(tokens, cost, to, false);
    }

    fn finish(&mut self, tokens: u64, cost: u64, to: &mut dyn Settled, refused: bool) {
        if self.done {
            return;
        }
        self.done = true;
        self.inflight.clear();
        let now = super::limits::now_nanos();
        let (minute, day) = (window_id(now, MINUTE), window_id(now, DAY));
        let reserved = self.reserved_tokens;
        let excess = tokens.saturating_sub(reserved);
        for h in &self.held {
            if refused {
                if let Some(interval) = h.rps {
                    h.state.rps.undo(interval);
                }
                if h.rpm {
                    h.state.rpm.settle(self.minute, minute, 1, 0);
                }
            } else if h.rpm && self.mode == Mode::Outage {
                h.state.leased.rpm.add(self.minute, 1);
                to.window(&h.state, Kind::Rpm, self.minute, 1);
            }
            for (on, window, lease, kind, id, now_id) in [
                (
                    h.tpm,
                    &h.state.tpm,
                    &h.state.leased.tpm,
                    Kind::Tpm,
                    self.minute,
                    minute,
                ),
                (
                    h.tpd,
                    &h.state.tpd,
                    &h.state.leased.tpd,
                    Kind::Tpd,
                    self.day,
                    day,
                ),
            ] {
                if !on {
                    continue;
                }
                window.settle(id, now_id, reserved, tokens);
                match self.mode {
                    // Past the lease: the store must count the excess too.
                    Mode::Leased if excess > 0 && !refused => {
                        lease.add(now_id, excess);
                        to.window(&h.state, kind, now_id, excess);
                    }
                    // Counted here only: the store hears of it on its return.
                    Mode::Outage if !refused => {
                        lease.add(id, tokens);
                        to.window(&h.state, kind, id, tokens);
                    }
                    _ => {}
                }
            }
            if let Some(b) = &h.budget {
                let period = period_id(b.period, now / 1_000_000_000);
                let crossed = h.state.spend.settle(b, period, self.reserved_cost, cost);
                match self.mode {
                    Mode::Memory => {
                        for c in crossed {
                            to.crossed(h.name, c);
                        }
                    }
                    _ if refused => {}
                    Mode::Leased => {
                        let extra = cost.saturating_sub(self.reserved_cost);
                        if extra > 0 {
                            h.state.spend.add_lease(period, extra);
                        }
                        to.spend(h.name, &h.state, b, period, cost, extra);
                    }
                    Mode::Outage => {
                        h.state.spend.add_lease(period, cost);
                        to.spend(h.name, &h.state, b, period, cost, cost);
                    }
                }
            }
        }
    }
}

/// How a ticket was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only this process counts.
    Memory,
    /// Within leases taken from the shared store.
    Leased,
    /// The shared store is away (fail-open): counted locally, sent on its return.
    Outage,
}

/// What a settlement reports beyond the local counters.
pub trait Settled {
    /// A budget threshold crossed (memory store: alerts decided here).
    fn crossed(&mut self, _scope: &'static str, _c: Crossing) {}
    /// Tokens or requests the shared store must add to a window.
    fn window(&mut self, _state: &Arc<ScopeState>, _kind: Kind, _id: u64, _n: u64) {}
    /// Spend for the shared store: `cost` spent, `committed` more committed.
    fn spend(
        &mut self,
        _scope: &'static str,
        _state: &Arc<ScopeState>,
        _budget: &Arc<Budget>,
        _period: u32,
        _cost: u64,
        _committed: u64,
    ) {
    }
}

struct NoOne;
impl Settled for NoOne {}

impl Drop for Ticket {
    /// A ticket never settled (a panic, a path that forgot) charges its reservation.
    fn drop(&mut self) {
        let (t, c) = (self.reserved_tokens, self.reserved_cost);
        self.finish(t, c, &mut NoOne, false);
    }
}
