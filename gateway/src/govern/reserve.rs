//! Admission and settlement for a request: which scopes apply, topping up
//! leases from the shared store, the fail-open and fail-closed paths, and
//! what a settlement sends on.

use std::sync::Arc;

use super::admit::{Ask, Mode, Scope, Settled, Ticket};
use super::alerts::Alert;
use super::budget::{nano_to_usd, period_id, Budget, Crossing, Price};
use super::directory::ScopeState;
use super::limits::{self, window_id, DAY, MINUTE};
use super::shared::{ttl_of, Delta, Kind, Shared, Shortfall};
use super::{Caller, Governance};
use crate::config::schema::FailMode;
use crate::errors::GatewayError;

impl Governance {
    fn scopes<'a>(&'a self, caller: Option<&'a Caller>, model: &str) -> Vec<Scope<'a>> {
        let mut scopes: Vec<Scope<'a>> = Vec::with_capacity(4);
        let mut push = |s: Scope<'a>| {
            if !s.limits.is_empty() || s.budget.is_some() {
                scopes.push(s);
            }
        };
        if let Some(c) = caller {
            if let Some(k) = &c.key {
                push(Scope {
                    name: "key",
                    limits: &k.limits,
                    state: &k.state,
                    budget: k.budget.as_ref(),
                });
            }
            push(Scope {
                name: "tenant",
                limits: &c.tenant.limits,
                state: &c.tenant.state,
                budget: c.tenant.budget.as_ref(),
            });
        }
        if let Some((l, s)) = self.models.get(model) {
            push(Scope {
                name: "model",
                limits: l,
                state: s,
                budget: None,
            });
        }
        push(Scope {
            name: "gateway",
            limits: &self.global.0,
            state: &self.global.1,
            budget: None,
        });
        scopes
    }

    /// Takes the request's share of every limit and budget that applies.
    pub async fn admit(
        &self,
        caller: Option<&Caller>,
        model: &str,
        upstream_model: &str,
        prompt_tokens: u64,
        max_tokens: Option<u64>,
    ) -> Result<Ticket, GatewayError> {
        let ask = Ask {
            prompt_tokens,
            max_tokens: max_tokens.unwrap_or(self.default_max_tokens),
            price: self.prices.get(model, upstream_model),
        };
        let scopes = self.scopes(caller, model);
        let Some(shared) = &self.shared else {
            return Ticket::admit(
                &scopes,
                &self.inflight,
                &ask,
                limits::now_nanos(),
                Mode::Memory,
            );
        };
        // Two tries: another request may take the lease topped up for this one.
        for attempt in 0..3 {
            if !shared.is_up() {
                return self.without_store(shared, &scopes, &ask);
            }
            let mut short = shortfalls(&scopes, &ask, limits::now_nanos());
            if !short.is_empty() {
                // One top-up at a time: requests that waited find the lease
                // their predecessor took, instead of each taking another.
                let _one = self.top_up_lock.lock().await;
                short = shortfalls(&scopes, &ask, limits::now_nanos());
                if let Err(e) = shared.top_up(&short).await {
                    tracing::warn!("lease from the shared store failed: {e}");
                    return self.without_store(shared, &scopes, &ask);
                }
            }
            // The clock after any wait: a lease is for the current window.
            let now = limits::now_nanos();
            match Ticket::admit(&scopes, &self.inflight, &ask, now, Mode::Leased) {
                Err(GatewayError::RateLimited { .. } | GatewayError::BudgetExceeded(_))
                    if attempt < 2 && !short.is_empty() => {}
                r => return r,
            }
        }
        Err(GatewayError::Internal("admission did not settle".into()))
    }

    fn without_store(
        &self,
        shared: &Shared,
        scopes: &[Scope<'_>],
        ask: &Ask,
    ) -> Result<Ticket, GatewayError> {
        match shared.fail {
            FailMode::Closed => Err(GatewayError::StoreUnavailable(
                "the shared store is unreachable and `store.fail` is `closed`".into(),
            )),
            FailMode::Open => Ticket::admit(
                scopes,
                &self.inflight,
                ask,
                limits::now_nanos(),
                Mode::Outage,
            ),
        }
    }

    /// Settles a ticket with what the request used, and fires the alerts
    /// it triggered. Returns the request's cost in nano-USD.
    pub fn settle(
        &self,
        caller: Option<&Caller>,
        ticket: &mut Ticket,
        usage: Option<&sluice_providers::Usage>,
        price: Option<Price>,
    ) -> u64 {
        let price = price.or(ticket.price);
        let (tokens, cost) = match usage {
            Some(u) => (
                u.prompt_tokens.saturating_add(u.completion_tokens),
                price.map_or(0, |p| {
                    p.cost(u.prompt_tokens, u.cache_read_tokens, u.completion_tokens)
                }),
            ),
            // Nothing known (refused before it left, or no counter): nothing used.
            None => (0, 0),
        };
        ticket.settle(tokens, cost, &mut Settle { gov: self, caller });
        cost
    }

    /// The price of a public model name, or of the upstream model it maps to.
    pub fn price(&self, model: &str, upstream: &str) -> Option<Price> {
        self.prices.get(model, upstream)
    }

    /// Fires a budget alert (memory store: decided by the spend lock; shared
    /// store: by a flag in Redis).
    pub fn alert(&self, scope: &'static str, id: String, b: &Budget, fraction: f64, spent: u64) {
        let now_ms = limits::now_nanos() / 1_000_000;
        let Some(webhook) = b.webhook.clone() else {
            tracing::warn!(
                scope,
                id = id.as_str(),
                threshold = fraction,
                "budget threshold crossed (no webhook)"
            );
            return;
        };
        let period = period_id(b.period, now_ms / 1000);
        self.alerts.fire(Alert {
            alert_id: format!("{scope}:{id}:{period}:{fraction}"),
            kind: "budget_threshold",
            scope,
            id,
            threshold: fraction,
            budget_usd: b.usd,
            spent_usd: nano_to_usd(spent),
            period: b.period,
            ts_ms: now_ms,
            webhook,
        });
    }
}

/// What each scope needs beyond what this instance leased.
fn shortfalls(scopes: &[Scope<'_>], ask: &Ask, now: u64) -> Vec<Shortfall> {
    let (minute, day) = (window_id(now, MINUTE), window_id(now, DAY));
    let mut out = Vec::new();
    let tokens = ask.tokens();
    for s in scopes {
        let (l, st, lease) = (s.limits, s.state, &s.state.leased);
        for (limit, used, held, kind, id, n) in [
            (l.rpm, &st.rpm, &lease.rpm, Kind::Rpm, minute, 1),
            (l.tpm, &st.tpm, &lease.tpm, Kind::Tpm, minute, tokens),
            (l.tpd, &st.tpd, &lease.tpd, Kind::Tpd, day, tokens),
        ] {
            let Some(limit) = limit else { continue };
            let (used, held) = (used.used(id), held.used(id));
            if used + n > held && held < limit {
                out.push(Shortfall::Window {
                    state: st.clone(),
                    kind,
                    id,
                    need: used + n - held,
                    limit,
                });
            }
        }
        if let Some(b) = s.budget.filter(|b| b.hard) {
            let period = period_id(b.period, now / 1_000_000_000);
            let (committed, leased) = st.spend.headroom(period);
            let max = ask.max_cost();
            if committed + max > leased && leased < b.limit {
                out.push(Shortfall::Budget {
                    state: st.clone(),
                    budget: b.clone(),
                    period,
                    need: committed + max - leased,
                });
            }
        }
    }
    out
}

struct Settle<'a> {
    gov: &'a Governance,
    caller: Option<&'a Caller>,
}

impl Settle<'_> {
    fn who(&self, scope: &'static str) -> String {
        match (self.caller, scope) {
            (Some(c), "key") => c.subject.clone(),
            (Some(c), _) => c.tenant.name.clone(),
            (None, _) => String::new(),
        }
    }
}

impl Settled for Settle<'_> {
    fn crossed(&mut self, scope: &'static str, c: Crossing) {
        let Some(caller) = self.caller else { return };
        let budget = match (&caller.key, scope) {
            (Some(k), "key") => k.budget.clone(),
            _ => caller.tenant.budget.clone(),
        };
        if let Some(b) = budget {
            self.gov
                .alert(scope, self.who(scope), &b, c.fraction, c.spent);
        }
    }

    fn window(&mut self, state: &Arc<ScopeState>, kind: Kind, id: u64, n: u64) {
        if let Some(s) = &self.gov.shared {
            s.push_window(state, kind, id, n);
        }
    }

    fn spend(
        &mut self,
        scope: &'static str,
        state: &Arc<ScopeState>,
        budget: &Arc<Budget>,
        period: u32,
        cost: u64,
        committed: u64,
    ) {
        let Some(s) = &self.gov.shared else { return };
        let ttl_ms = ttl_of(budget.period);
        if cost > 0 {
            s.push(Delta {
                key: s.spent_key(state, period),
                n: cost as i64,
                ttl_ms,
                alert: Some((budget.clone(), scope, self.who(scope), period)),
            });
        }
        if committed > 0 {
            s.push(Delta {
                key: s.committed_key(state, period),
                n: committed as i64,
                ttl_ms,
                alert: None,
            });
        }
    }
}
