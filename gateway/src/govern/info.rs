//! `GET /v1/key/info`: a key holder's own limits and what is left of them.

use std::sync::Arc;

use bytes::Bytes;

use super::budget::{self, nano_to_usd, period_id};
use super::directory::ScopeState;
use super::limits::{self, Limits};
use super::{Caller, Governance};

impl Governance {
    /// `GET /v1/key/info`: the caller's own limits and what is left.
    pub async fn key_info(&self, caller: &Caller) -> Bytes {
        let now = limits::now_nanos();
        let t = &caller.tenant;
        let tenant_spent = self.spent(&t.state, t.budget.as_ref(), now).await;
        let key_spent = match &caller.key {
            Some(k) => self.spent(&k.state, k.budget.as_ref(), now).await,
            None => None,
        };
        let view =
            |l: &Limits, s: &ScopeState, b: Option<&Arc<budget::Budget>>, spent: Option<u64>| {
                let minute = limits::window_id(now, limits::MINUTE);
                let day = limits::window_id(now, limits::DAY);
                let budget = b.map(|b| {
                    let mut v = s.spend.view(period_id(b.period, now / 1_000_000_000));
                    if let Some(total) = spent {
                        v.spent = total;
                    }
                    serde_json::json!({
                        "usd": b.usd,
                        "period": b.period,
                        "hard": b.hard,
                        "spent_usd": nano_to_usd(v.spent),
                        "reserved_usd": nano_to_usd(v.reserved),
                        "remaining_usd": nano_to_usd(b.limit.saturating_sub(v.spent + v.reserved)),
                    })
                });
                serde_json::json!({
                    "limits": {
                        "rps": l.rps_raw, "rpm": l.rpm, "tpm": l.tpm, "tpd": l.tpd,
                        "concurrency": l.concurrency,
                    },
                    "remaining": {
                        "requests_this_minute": l.rpm.map(|m| m.saturating_sub(s.rpm.used(minute))),
                        "tokens_this_minute": l.tpm.map(|m| m.saturating_sub(s.tpm.used(minute))),
                        "tokens_today": l.tpd.map(|m| m.saturating_sub(s.tpd.used(day))),
                    },
                    "budget": budget,
                })
            };
        let mut out = serde_json::json!({
            "tenant": { "id": t.name, "models": t.def.models, "endpoints": t.def.endpoints },
        });
        if let Some(o) = out["tenant"].as_object_mut() {
            o.extend(obj(view(
                &t.limits,
                &t.state,
                t.budget.as_ref(),
                tenant_spent,
            )));
        }
        if let Some(k) = &caller.key {
            let mut key = serde_json::json!({
                "id": k.id, "models": k.def.models, "endpoints": k.def.endpoints,
                "metadata": k.metadata,
            });
            if let Some(o) = key.as_object_mut() {
                o.extend(obj(view(&k.limits, &k.state, k.budget.as_ref(), key_spent)));
            }
            out["key"] = key;
        } else {
            out["subject"] = caller.subject.clone().into();
            out["roles"] = caller.roles.clone().into();
        }
        Bytes::from(out.to_string())
    }
}

impl Governance {
    /// With a shared store: the scope's spend across every instance.
    async fn spent(
        &self,
        s: &ScopeState,
        b: Option<&Arc<budget::Budget>>,
        now: u64,
    ) -> Option<u64> {
        let (shared, b) = (self.shared.as_ref()?, b?);
        let period = period_id(b.period, now / 1_000_000_000);
        Some(shared.get(&shared.spent_key(s, period)).await.unwrap_or(0))
    }
}

fn obj(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}
