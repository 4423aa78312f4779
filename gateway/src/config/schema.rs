//! The YAML schema, exactly: every struct denies unknown fields, so a typo is
//! an error with the list of what is allowed, never silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use super::governance::*;
use super::secret::SecretRef;
use super::units::{Dur, Size};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSection>,
    #[serde(default)]
    pub models: BTreeMap<String, ModelSection>,
    /// Body filters for every model; `models.<name>.filters` overrides per filter.
    #[serde(default)]
    pub filters: sluice_filters::FiltersConfig,
    /// Content rules, in order, evaluated before the requested model's pool.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// Path prefixes forwarded untranslated to a pool of providers (files,
    /// batches, audio, fine-tuning: whatever Sluice does not translate).
    #[serde(default)]
    pub passthrough: Vec<PassthroughSection>,
    /// Who may call: `none` (explicit), keys, JWT or either.
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSection>,
    #[serde(default)]
    pub keys: Vec<KeySection>,
    /// Global and per-model limits; per-tenant and per-key ones sit with them.
    #[serde(default)]
    pub limits: GlobalLimits,
    /// USD per million tokens by public model name, over the shipped table.
    #[serde(default)]
    pub prices: BTreeMap<String, PriceSection>,
    /// Where keys, limits and spend live: this process, or Redis.
    #[serde(default)]
    pub store: StoreSection,
    /// One JSON line per request; needed for budgets to survive a restart.
    pub usage_log: Option<UsageLogSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughSection {
    /// E.g. `/openai/`: stripped, and the rest appended to the provider's base URL.
    pub prefix: String,
    pub targets: Vec<PassTargetSection>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub breaker: BreakerSection,
    /// Largest request body accepted; unlimited when absent.
    pub max_body: Option<Size>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassTargetSection {
    pub provider: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Every condition given must hold; an empty `when` always matches.
    #[serde(default)]
    pub when: WhenSection,
    /// The model that serves a matching request...
    pub to: Option<String>,
    /// ...or a weighted split between models (A/B tests, canaries).
    pub split: Option<Vec<SplitSection>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenSection {
    /// The requested model: exact, or a glob with `*` and `?`.
    pub model: Option<String>,
    /// Request headers and the values (exact, or globs) they must have.
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    /// A regex over the prompt text in `prompt_scope`.
    pub prompt_regex: Option<String>,
    /// Words or phrases (case-insensitive), any of which in `prompt_scope` matches.
    #[serde(default)]
    pub prompt_keywords: Vec<String>,
    #[serde(default)]
    pub prompt_scope: PromptScope,
    /// Estimated prompt tokens at least / at most this many.
    pub min_prompt_tokens: Option<u64>,
    pub max_prompt_tokens: Option<u64>,
    /// The request offers tools / carries images (true), or does not (false).
    pub has_tools: Option<bool>,
    pub has_images: Option<bool>,
    /// The caller's tenant (exact, or a glob).
    pub tenant: Option<String>,
    /// The caller's key id (exact, or a glob).
    pub key: Option<String>,
    /// Labels of the caller's key (falling back to its tenant's) and the
    /// values (exact, or globs) they must have.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PromptScope {
    /// User messages (and tool results, which carry user-supplied content).
    #[default]
    User,
    System,
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSection {
    pub model: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Plain listener (HTTP/1.1 and h2c); `--listen` overrides.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Admin listener: /healthz /readyz /metrics; `--admin` overrides.
    #[serde(default = "default_admin")]
    pub admin_listen: String,
    /// Worker threads of the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Largest request body accepted on the LLM endpoints.
    #[serde(default = "default_max_body")]
    pub max_request_body: Size,
    /// Largest single upstream stream event; a larger one ends the stream
    /// with an error event.
    #[serde(default = "default_max_event")]
    pub max_stream_event: Size,
    /// How long in-flight requests (streams included) may run after SIGTERM/SIGINT.
    #[serde(default = "default_grace")]
    pub grace_period: Dur,
    /// Accept HTTP/2 with prior knowledge on the plain listener.
    #[serde(default = "yes")]
    pub h2c: bool,
    /// Optional TLS listener with ALPN h2 and http/1.1.
    pub tls: Option<TlsSection>,
    /// One `info` line per request on the `sluice::access` target.
    #[serde(default = "yes")]
    pub access_log: bool,
    /// Idle upstream connections kept per process.
    #[serde(default = "default_pool")]
    pub upstream_pool_size: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            admin_listen: default_admin(),
            threads: default_threads(),
            max_request_body: default_max_body(),
            max_stream_event: default_max_event(),
            grace_period: default_grace(),
            h2c: true,
            tls: None,
            access_log: true,
            upstream_pool_size: default_pool(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub listen: String,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    OpenaiCompatible,
    Azure,
    Anthropic,
    Gemini,
    Mock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::OpenaiCompatible => "openai_compatible",
            ProviderKind::Azure => "azure",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Mock => "mock",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub kind: ProviderKind,
    /// Required for every kind except `mock`, which Sluice serves itself.
    pub base_url: Option<String>,
    pub api_key: Option<SecretRef>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Extra headers sent on every upstream request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Client headers passed upstream (exact names, or a prefix ending in `*`).
    /// Credentials are never forwarded, whatever this says.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Upstream TLS: extra trust roots; verification is always on.
    pub tls: Option<UpstreamTls>,
    /// Behaviour of the embedded mock (`kind: mock` only).
    pub mock: Option<MockSection>,
    /// Azure: the `api-version` query parameter (required). Anthropic: the
    /// `anthropic-version` header (default 2023-06-01).
    pub api_version: Option<String>,
    /// `max_tokens` sent when a client gave none and the target requires
    /// one (Anthropic). Default 4096.
    pub default_max_tokens: Option<u32>,
    /// Refuse (400) requests with fields this provider's format cannot
    /// express, instead of dropping them and saying so in
    /// `x-sluice-dropped-params`.
    #[serde(default)]
    pub strict: bool,
    /// How an OpenAI-compatible server departs from OpenAI, as data.
    #[serde(default)]
    pub quirks: Quirks,
    /// Active health checks; their verdicts eject and restore this provider's targets.
    pub health_check: Option<HealthCheckSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSection {
    #[serde(default = "default_hc_interval")]
    pub interval: Dur,
    /// Below the base URL, e.g. `/models`.
    #[serde(default = "default_hc_path")]
    pub path: String,
    #[serde(default = "default_hc_status")]
    pub expect_status: u16,
    #[serde(default = "default_hc_timeout")]
    pub timeout: Dur,
}

fn default_hc_interval() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn default_hc_path() -> String {
    "/models".into()
}
fn default_hc_status() -> u16 {
    200
}
fn default_hc_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(2))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quirks {
    /// Request fields removed before sending (e.g. `[seed, logprobs]`).
    #[serde(default)]
    pub drop_params: Vec<String>,
    /// Request fields renamed before sending (e.g. `{max_tokens: max_completion_tokens}`).
    #[serde(default)]
    pub rename_params: BTreeMap<String, String>,
    /// The server understands `stream_options.include_usage` (default true).
    #[serde(default = "yes")]
    pub stream_usage: bool,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            drop_params: Vec::new(),
            rename_params: BTreeMap::new(),
            stream_usage: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM file of CA certificates trusted instead of the system roots.
    pub ca_file: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TCP (and TLS) connection establishment.
    #[serde(default = "default_connect")]
    pub connect: Dur,
    /// From request sent to the upstream's response head.
    #[serde(default = "default_first_byte")]
    pub first_byte: Dur,
    /// Longest silence between two body reads of the response.
    #[serde(default = "default_idle")]
    pub idle: Dur,
    /// Whole exchange, streams included.
    #[serde(default = "default_total")]
    pub total: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: default_connect(),
            first_byte: default_first_byte(),
            idle: default_idle(),
            total: default_total(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockSection {
    #[serde(default)]
    pub ttft_ms: u64,
    #[serde(default)]
    pub itl_ms: u64,
    pub tokens: Option<usize>,
    #[serde(default)]
    pub echo: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub targets: Vec<TargetSection>,
    /// How a request picks among `targets`.
    #[serde(default)]
    pub balance: Balance,
    /// Filters for this model, replacing the global ones filter by filter.
    pub filters: Option<sluice_filters::FiltersConfig>,
    /// Models tried in order once this model's pool is exhausted.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// Models for particular upstream refusals, tried before `fallback`.
    #[serde(default)]
    pub fallback_on: FallbackOn,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub breaker: BreakerSection,
    /// Overrides of the providers' timeouts for this model.
    #[serde(default)]
    pub timeouts: TimeoutOverrides,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Weighted,
    LeastConnections,
    Latency,
    Random,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackOn {
    /// A model with a larger context, for "context length exceeded" errors.
    pub context_length: Option<String>,
    /// A model to try when the upstream refuses on content policy.
    pub content_policy: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts per model, the first included; 1 disables retries.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Base of the exponential backoff (full jitter).
    #[serde(default = "default_backoff")]
    pub backoff: Dur,
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Dur,
    /// No new attempt starts later than this after the request arrived.
    #[serde(default = "default_deadline")]
    pub deadline: Dur,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            deadline: default_deadline(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive failures that eject a target.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// Failure ratio over `window` that ejects a target...
    #[serde(default = "default_error_rate")]
    pub error_rate: f64,
    /// ...once the window holds at least this many requests.
    #[serde(default = "default_min_requests")]
    pub min_requests: u32,
    #[serde(default = "default_window")]
    pub window: Dur,
    /// Time ejected before a probe request is let through.
    #[serde(default = "default_cooldown")]
    pub cooldown: Dur,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            enabled: true,
            failures: default_failures(),
            error_rate: default_error_rate(),
            min_requests: default_min_requests(),
            window: default_window(),
            cooldown: default_cooldown(),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutOverrides {
    pub connect: Option<Dur>,
    pub first_byte: Option<Dur>,
    pub idle: Option<Dur>,
    pub total: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    pub provider: String,
    /// Model name sent upstream; defaults to the public model name.
    pub model: Option<String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Requests this target may have in flight from this instance.
    pub max_in_flight: Option<u32>,
}

fn default_attempts() -> u32 {
    3
}
fn default_backoff() -> Dur {
    Dur(std::time::Duration::from_millis(100))
}
fn default_max_backoff() -> Dur {
    Dur(std::time::Duration::from_secs(2))
}
fn default_deadline() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_failures() -> u32 {
    5
}
fn default_error_rate() -> f64 {
    0.5
}
fn default_min_requests() -> u32 {
    20
}
fn default_window() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_cooldown() -> Dur {
    Dur(std::time::Duration::from_secs(10))
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_admin() -> String {
    "127.0.0.1:9901".into()
}
fn default_threads() -> usize {
    2
}
fn default_max_body() -> Size {
    Size(10 << 20)
}
fn default_max_event() -> Size {
    Size(1 << 20)
}
fn default_grace() -> Dur {
    Dur(std::time::Duration::from_secs(30))
}
fn default_pool() -> usize {
    256
}
fn default_connect() -> Dur {
    Dur(std::time::Duration::from_secs(5))
}
fn default_first_byte() -> Dur {
    Dur(std::time::Duration::from_secs(120))
}
fn default_idle() -> Dur {
    Dur(std::time::Duration::from_secs(60))
}
fn default_total() -> Dur {
    Dur(std::time::Duration::from_secs(600))
}
fn default_weight() -> u32 {
    1
}
fn yes() -> bool {
    true
}
