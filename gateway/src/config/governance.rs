//! Schema of the governance sections: `auth`, `tenants`, `keys`, `limits`,
//! `prices`, `store` and `usage_log`.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use super::secret::SecretRef;
use super::units::{Dur, Size};

/// `auth: none` or `auth: { mode: keys, ... }`.
#[derive(Debug, Default)]
pub struct AuthSection {
    /// `None` when the config has no `auth:` at all (a compile error unless keys exist).
    pub mode: Option<AuthMode>,
    pub admin_token: Option<SecretRef>,
    pub jwt: Option<JwtSection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every request is anonymous: only for a trusted network.
    None,
    Keys,
    Jwt,
    KeysOrJwt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFields {
    mode: AuthMode,
    admin_token: Option<SecretRef>,
    jwt: Option<JwtSection>,
}

impl<'de> Deserialize<'de> for AuthSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A plain string is the mode alone; a map keeps serde's own messages.
        let v = serde_yaml::Value::deserialize(d)?;
        if let serde_yaml::Value::String(_) = v {
            let mode = AuthMode::deserialize(v).map_err(de::Error::custom)?;
            return Ok(AuthSection {
                mode: Some(mode),
                ..AuthSection::default()
            });
        }
        let f = AuthFields::deserialize(v).map_err(de::Error::custom)?;
        Ok(AuthSection {
            mode: Some(f.mode),
            admin_token: f.admin_token,
            jwt: f.jwt,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    /// A JWKS document: a file path, or an `http(s)://` URL fetched and refreshed.
    pub jwks: Option<String>,
    /// Shared secret for HS256 tokens.
    pub secret: Option<SecretRef>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Claim naming the tenant; the tenant must exist in `tenants`.
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Claim holding the caller's roles (a string or a list).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// How often a JWKS is reloaded (a token with an unknown `kid` also triggers a reload).
    #[serde(default = "default_jwks_refresh")]
    pub refresh: Dur,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Dur,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_roles_claim() -> String {
    "roles".into()
}
fn default_jwks_refresh() -> Dur {
    Dur(std::time::Duration::from_secs(300))
}
fn default_leeway() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}

/// Limits of one scope (key, tenant, model or global). Absent means unlimited.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Requests per second, smoothed (GCRA) with `burst`.
    pub rps: Option<u32>,
    /// Extra requests allowed at once above `rps`; defaults to `rps`.
    pub burst: Option<u32>,
    /// Requests per calendar minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion) per calendar minute, admitted by reservation.
    pub tpm: Option<u64>,
    /// Tokens per UTC day, admitted by reservation.
    pub tpd: Option<u64>,
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Daily,
    #[default]
    Monthly,
    Total,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    pub usd: f64,
    #[serde(default)]
    pub period: Period,
    /// Reject requests that could exceed the budget; false only alerts.
    #[serde(default = "yes")]
    pub hard: bool,
    /// Fractions of `usd` that fire an alert once per period each.
    #[serde(default)]
    pub alert_at: Vec<f64>,
    /// Where alerts are POSTed (JSON), retried with backoff.
    pub webhook: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// Public model names (globs) this tenant may use; all when absent.
    pub models: Option<Vec<String>>,
    /// Request paths (globs) this tenant may call; all when absent.
    pub endpoints: Option<Vec<String>>,
    #[serde(default)]
    pub limits: LimitsSection,
    pub budget: Option<BudgetSection>,
    /// Free-form labels, matched by `routes[].when.metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    pub id: String,
    pub tenant: String,
    /// The key itself, from the environment...
    pub key: Option<SecretRef>,
    /// ...or only its SHA-256, in hex.
    pub key_sha256: Option<String>,
    /// Narrower than the tenant's lists, never wider.
    pub models: Option<Vec<String>>,
    pub endpoints: Option<Vec<String>>,
    #[serde(default)]
    pub limits: LimitsSection,
    pub budget: Option<BudgetSection>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalLimits {
    /// Across every caller.
    #[serde(default)]
    pub global: LimitsSection,
    /// Per public model name, across every caller.
    #[serde(default)]
    pub models: BTreeMap<String, LimitsSection>,
    /// Completion tokens reserved when a request names no `max_tokens`.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
}

fn default_max_tokens() -> u64 {
    4096
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceSection {
    /// USD per million input tokens.
    pub input: f64,
    /// USD per million output tokens.
    pub output: f64,
    /// USD per million cached input tokens; `input` when absent.
    pub cached_input: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Local limits only while the store is away; reconciled on return.
    #[default]
    Open,
    /// Refuse requests (503) while the store is away.
    Closed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    #[serde(default)]
    pub kind: StoreKind,
    /// For `memory`: a file where keys and tenants created at run time are kept.
    pub state: Option<String>,
    /// For `redis`: `redis://host:port/db`; `${ENV}` references are expanded.
    pub url: Option<String>,
    #[serde(default)]
    pub fail: FailMode,
    /// Share of a limit an instance leases at a time (see the README's
    /// formula for what instances can strand).
    /// Defaults to 0.02.
    pub lease: Option<f64>,
    /// Lease exactly what each request needs: one round trip per request.
    #[serde(default)]
    pub exact: bool,
    /// Also append every usage record to the `sluice:usage` stream.
    #[serde(default)]
    pub usage_stream: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// Every record is on disk before its response completes.
    Always,
    /// Written before the response completes; flushed to disk every second.
    #[default]
    Interval,
    /// Left to the operating system.
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageLogSection {
    pub path: String,
    #[serde(default)]
    pub fsync: Fsync,
    /// The file is rotated when it grows past this.
    #[serde(default = "default_rotate")]
    pub rotate_size: Size,
}

fn default_rotate() -> Size {
    Size(128 << 20)
}
