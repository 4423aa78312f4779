//! Governance: who may call (keys, JWT), what they may call (models,
//! endpoints), how much (limits, budgets), and what they used (usage records).
//! Built once at start; keys and tenants change at run time through the
//! admin API, everything else is fixed until restart.

pub mod admin;
pub mod admit;
pub mod alerts;
pub mod auth;
pub mod budget;
pub mod client;
pub mod directory;
pub mod info;
pub mod jwt;
pub mod limits;
pub mod reserve;
pub mod service;
pub mod shared;
pub mod usage;
mod usage_json;
pub mod usage_query;
mod wal;

use std::collections::HashMap;
use std::sync::Arc;

use self::alerts::Alerts;
use self::budget::{period_id, Prices};
use self::directory::{hex, sha256, Directory, Key, KeyDef, ScopeState, Tenant};
use self::limits::Limits;
use self::usage::{UsageLog, UsageRecord};
use crate::config::schema::{AuthMode, RawConfig, StoreKind};
use crate::config::secret::Secret;

/// Who is calling: always a tenant; a key unless the caller came with a JWT.
pub struct Caller {
    pub tenant: Arc<Tenant>,
    pub key: Option<Arc<Key>>,
    /// The key id, or the JWT's subject.
    pub subject: String,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn allows_model(&self, model: &str) -> bool {
        match &self.key {
            Some(k) => k.allows_model(model),
            None => self
                .tenant
                .models
                .as_ref()
                .is_none_or(|l| l.iter().any(|g| g.matches(model))),
        }
    }

    pub fn allows_endpoint(&self, path: &str) -> bool {
        match &self.key {
            Some(k) => k.allows_endpoint(path),
            None => self
                .tenant
                .endpoints
                .as_ref()
                .is_none_or(|l| l.iter().any(|g| g.matches(path))),
        }
    }

    /// Whether a model list or a budget applies to this caller.
    pub fn is_bounded(&self) -> bool {
        let t = &self.tenant;
        t.models.is_some()
            || t.budget.is_some()
            || self
                .key
                .as_ref()
                .is_some_and(|k| k.models.is_some() || k.budget.is_some())
    }

    /// Whether an endpoint list (which `allows_endpoint` checked) applies.
    pub fn lists_endpoints(&self) -> bool {
        self.tenant.endpoints.is_some() || self.key.as_ref().is_some_and(|k| k.endpoints.is_some())
    }

    /// A metadata label of the key, else of the tenant.
    pub fn label(&self, name: &str) -> Option<&str> {
        match &self.key {
            Some(k) => k.label(name),
            None => self.tenant.metadata.get(name).map(String::as_str),
        }
    }
}

pub struct Governance {
    pub mode: AuthMode,
    pub(crate) admin_token: Option<Secret>,
    pub jwt: Option<jwt::Jwt>,
    pub dir: Directory,
    pub(crate) global: (Limits, Arc<ScopeState>),
    pub(crate) models: crate::lookup::Lookup<String, (Limits, Arc<ScopeState>)>,
    pub default_max_tokens: u64,
    pub(crate) prices: Prices,
    pub usage: std::sync::OnceLock<Arc<UsageLog>>,
    pub(crate) inflight: pingora_limits::inflight::Inflight,
    pub alerts: Arc<Alerts>,
    /// Where the memory store keeps run-time changes to keys and tenants.
    state_file: Option<String>,
    /// The Redis store, when configured.
    pub shared: Option<Arc<shared::Shared>>,
    /// Token usage must be known: token limits, budgets or a usage log.
    pub counts_tokens: bool,
    usage_errors: prometheus::IntCounter,
    /// Serialises admin changes on this instance.
    pub(crate) admin_lock: tokio::sync::Mutex<()>,
    /// One lease top-up at a time, so concurrent requests share it.
    pub(crate) top_up_lock: tokio::sync::Mutex<()>,
}

/// Problems found while compiling, as (YAML path, message).
pub type Problems = Vec<(String, String)>;

impl Governance {
    pub fn compile(
        raw: &RawConfig,
        registry: &prometheus::Registry,
    ) -> Result<Governance, Problems> {
        let mut problems: Problems = Vec::new();
        let mut bad = |path: &str, msg: String| problems.push((path.to_string(), msg));
        let mode = match raw.auth.mode {
            Some(m) => m,
            None if raw.keys.is_empty() => {
                bad(
                    "auth",
                    "no `auth` section and no keys: add `keys:`, or say `auth: none` to serve \
                     without authentication (trusted networks only)"
                        .into(),
                );
                AuthMode::None
            }
            None => AuthMode::Keys,
        };
        if matches!(mode, AuthMode::Jwt | AuthMode::KeysOrJwt) && raw.auth.jwt.is_none() {
            bad("auth.jwt", format!("mode {mode:?} needs a `jwt` section"));
        }
        let jwt = match &raw.auth.jwt {
            Some(j) => match jwt::Jwt::new(j) {
                Ok(j) => Some(j),
                Err(e) => {
                    bad("auth.jwt", e);
                    None
                }
            },
            None => None,
        };
        let admin_token = match &raw.auth.admin_token {
            Some(r) => match r.resolve() {
                Ok(s) => Some(s),
                Err(var) => {
                    bad(
                        "auth.admin_token",
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            None => None,
        };
        let mut keys = Vec::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let path = format!("keys[{i}]");
            if !admin::valid_id(&k.id) {
                bad(
                    &format!("{path}.id"),
                    "letters, digits, '-', '_' and '.' only, at most 128".into(),
                );
            }
            let sha = match (&k.key, &k.key_sha256) {
                (Some(r), None) => match r.resolve() {
                    Ok(s) => hex(&sha256(s.expose())),
                    Err(var) => {
                        bad(
                            &format!("{path}.key"),
                            format!("environment variable {var} is not set"),
                        );
                        continue;
                    }
                },
                (None, Some(h)) if directory::parse_hex32(h).is_some() => h.to_ascii_lowercase(),
                (None, Some(_)) => {
                    bad(
                        &format!("{path}.key_sha256"),
                        "must be 64 hex digits (the SHA-256 of the key)".into(),
                    );
                    continue;
                }
                _ => {
                    bad(
                        &path,
                        "give exactly one of `key` (an ${ENV} reference) or `key_sha256`".into(),
                    );
                    continue;
                }
            };
            keys.push(KeyDef {
                id: k.id.clone(),
                tenant: k.tenant.clone(),
                sha256: sha,
                models: k.models.clone(),
                endpoints: k.endpoints.clone(),
                limits: k.limits.clone(),
                budget: k.budget.clone(),
                metadata: k.metadata.clone(),
                disabled: k.disabled,
                created_ms: 0,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for k in &keys {
            if !seen.insert(k.id.clone()) {
                bad("keys", format!("key id '{}' appears twice", k.id));
            }
        }
        for (scope, b) in
            raw.tenants
                .iter()
                .filter_map(|(n, t)| {
                    t.budget
                        .as_ref()
                        .map(|b| (format!("tenants.{n}.budget"), b))
                })
                .chain(raw.keys.iter().enumerate().filter_map(|(i, k)| {
                    k.budget.as_ref().map(|b| (format!("keys[{i}].budget"), b))
                }))
        {
            if b.usd.is_nan() || b.usd <= 0.0 {
                bad(&scope, "usd must be above 0".into());
            }
            if b.alert_at.iter().any(|f| f.is_nan() || *f <= 0.0) {
                bad(
                    &format!("{scope}.alert_at"),
                    "fractions must be above 0 (e.g. 0.5, 0.8, 1.0)".into(),
                );
            }
            if let Some(w) = &b.webhook {
                if let Err(e) = crate::upstream::BaseUrl::parse(w) {
                    bad(&format!("{scope}.webhook"), e);
                }
            }
        }
        let dir = match Directory::new(keys, raw.tenants.clone()) {
            Ok(d) => Some(d),
            Err(e) => {
                bad("keys", e);
                None
            }
        };
        let prices = match Prices::new(&raw.prices) {
            Ok(p) => Some(p),
            Err(e) => {
                bad("prices", e);
                None
            }
        };
        let mut state_file = None;
        let mut shared = None;
        let st = &raw.store;
        match st.kind {
            StoreKind::Memory => state_file = st.state.clone(),
            StoreKind::Redis => match st.url.as_deref().map(expand_env) {
                None => bad(
                    "store.url",
                    "a redis store needs `url: redis://host:port`".into(),
                ),
                Some(Err(var)) => bad(
                    "store.url",
                    format!("environment variable {var} is not set"),
                ),
                Some(Ok(url)) => {
                    let lease = st.lease.unwrap_or(0.02);
                    if !(lease > 0.0 && lease <= 1.0) {
                        bad(
                            "store.lease",
                            "a share of the limit, above 0 and at most 1".into(),
                        );
                    }
                    match shared::Shared::new(
                        &url,
                        st.fail,
                        lease,
                        st.exact,
                        st.usage_stream,
                        registry,
                    ) {
                        Ok(s) => shared = Some(Arc::new(s)),
                        Err(e) => bad("store.url", e),
                    }
                }
            },
        }
        if st.usage_stream && raw.usage_log.is_none() {
            bad(
                "store.usage_stream",
                "the stream copies the usage log: configure `usage_log` too".into(),
            );
        }
        let metric = |name: &str, help: &str| {
            let c = prometheus::IntCounter::new(name, help);
            if let Ok(c) = &c {
                let _ = registry.register(Box::new(c.clone()));
            }
            c
        };
        let counters = (
            metric(
                "sluice_alerts_sent_total",
                "Budget alerts delivered to their webhook",
            ),
            metric(
                "sluice_alerts_failed_total",
                "Budget alerts given up after every retry",
            ),
            metric(
                "sluice_usage_log_errors_total",
                "Usage records that could not be written",
            ),
        );
        let (Some(dir), Some(prices), (Ok(sent), Ok(failed), Ok(usage_errors))) =
            (dir, prices, counters)
        else {
            if problems.is_empty() {
                problems.push(("".into(), "cannot register governance metrics".into()));
            }
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let l = &raw.limits;
        let counts_tokens = raw.usage_log.is_some()
            || l.global.tpm.is_some()
            || l.global.tpd.is_some()
            || l.models.values().any(|m| m.tpm.is_some() || m.tpd.is_some())
            || raw.tenants.values().any(|t| t.budget.is_some() || t.limits.tpm.is_some() || t.limits.tpd.is_some())
            || raw.keys.iter().any(|k| k.budget.is_some() || k.limits.tpm.is_some() || k.limits.tpd.is_some())
            // Keys added at run time may carry token limits or budgets.
            || mode != AuthMode::None;
        let models = l
            .models
            .iter()
            .map(|(m, s)| (m.clone(), (Limits::new(s), dir.state(&format!("m:{m}")))))
            .collect();
        Ok(Governance {
            mode,
            admin_token,
            jwt,
            global: (Limits::new(&l.global), dir.state("g:")),
            models,
            dir,
            default_max_tokens: l.default_max_tokens,
            prices,
            usage: std::sync::OnceLock::new(),
            inflight: pingora_limits::inflight::Inflight::new(),
            alerts: Arc::new(Alerts::new(sent, failed)),
            state_file,
            shared,
            counts_tokens,
            usage_errors,
            admin_lock: tokio::sync::Mutex::new(()),
            top_up_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether requests are admitted at all (a mode other than `none`, or limits).
    pub fn is_on(&self) -> bool {
        self.mode != AuthMode::None || !self.global.0.is_empty() || !self.models.is_empty()
    }

    /// Sets the usage log, and rebuilds spend from its records.
    pub fn attach_usage(&self, log: Arc<UsageLog>, records: &[UsageRecord]) {
        let table = self.dir.table.load();
        let now = limits::now_nanos() / 1_000_000_000;
        let mut spent: HashMap<(bool, &str), u64> = HashMap::new();
        for r in records {
            let secs = r.ts_ms / 1000;
            if let Some(k) = r.key_id.as_deref().and_then(|id| table.keys.get(id)) {
                if let Some(b) = &k.budget {
                    if period_id(b.period, secs) == period_id(b.period, now) {
                        *spent.entry((true, k.id.as_str())).or_default() += r.cost_nano_usd;
                    }
                }
            }
            if let Some(t) = r.tenant.as_deref().and_then(|n| table.tenants.get(n)) {
                if let Some(b) = &t.budget {
                    if period_id(b.period, secs) == period_id(b.period, now) {
                        *spent.entry((false, t.name.as_str())).or_default() += r.cost_nano_usd;
                    }
                }
            }
        }
        for ((is_key, id), n) in spent {
            let (state, budget) = if is_key {
                let k = &table.keys[id];
                (&k.state, k.budget.as_ref())
            } else {
                let t = &table.tenants[id];
                (&t.state, t.budget.as_ref())
            };
            if let Some(b) = budget {
                state.spend.restore(b, period_id(b.period, now), n);
            }
        }
        let _ = self.usage.set(log);
    }

    pub fn usage_failed(&self, e: &str) {
        self.usage_errors.inc();
        tracing::error!("{e}");
    }

    pub fn state_file(&self) -> Option<&str> {
        self.state_file.as_deref()
    }
}

/// Expands `${VAR}` references in a value.
fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            return Ok(out);
        };
        let var = &rest[i + 2..i + j];
        out.push_str(&std::env::var(var).map_err(|_| var.to_string())?);
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
