//! The `filters:` config section (global, and per model with the same keys).
//! Each filter owns its part; `merge` lays a model's section over the global one.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersConfig {
    pub token_count: Option<TokenCountConfig>,
    pub pii: Option<PiiConfig>,
    pub guardrails: Option<GuardrailsConfig>,
}

impl FiltersConfig {
    /// A model's section replaces the global one filter by filter.
    pub fn merge(&self, model: &FiltersConfig) -> FiltersConfig {
        FiltersConfig {
            token_count: model
                .token_count
                .clone()
                .or_else(|| self.token_count.clone()),
            pii: model.pii.clone().or_else(|| self.pii.clone()),
            guardrails: model.guardrails.clone().or_else(|| self.guardrails.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnDisconnect {
    /// Keep reading the upstream to its end, for exact usage.
    #[default]
    Drain,
    /// Cancel the upstream and count what had arrived.
    CountReceived,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCountConfig {
    #[serde(default)]
    pub on_disconnect: OnDisconnect,
    /// Characters per token for model families without a known tokenizer.
    #[serde(default = "default_chars_per_token")]
    pub chars_per_token: f64,
}

fn default_chars_per_token() -> f64 {
    4.0
}

impl Default for TokenCountConfig {
    fn default() -> Self {
        TokenCountConfig {
            on_disconnect: OnDisconnect::default(),
            chars_per_token: default_chars_per_token(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PiiAction {
    Redact,
    Mask,
    Hash,
    Block,
    Reversible,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    Email,
    Phone,
    CreditCard,
    Ssn,
    Iban,
    Ip,
    Secret,
}

impl Detector {
    pub const ALL: [Detector; 7] = [
        Detector::Email,
        Detector::Phone,
        Detector::CreditCard,
        Detector::Ssn,
        Detector::Iban,
        Detector::Ip,
        Detector::Secret,
    ];
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    pub action: PiiAction,
    #[serde(default = "all_detectors")]
    pub detectors: Vec<Detector>,
    #[serde(default)]
    pub custom: Vec<CustomDetector>,
    /// Literal strings always treated as PII (case-insensitive).
    #[serde(default)]
    pub deny_list: Vec<String>,
    /// Also mask model output (never with `reversible`, which restores it).
    #[serde(default)]
    pub responses: bool,
    /// Key for `hash`, as a `${ENV_VAR}` reference. Without it a built-in
    /// key is used: hashes stay stable, but anyone can recompute them.
    pub hash_key: Option<String>,
}

fn all_detectors() -> Vec<Detector> {
    Detector::ALL.to_vec()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    pub name: String,
    pub regex: String,
    pub action: Option<PiiAction>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    #[default]
    Off,
    Flag,
    Block,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsConfig {
    #[serde(default)]
    pub prompt_injection: GuardAction,
    /// Score at which a prompt counts as an injection attempt.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    pub max_messages: Option<usize>,
    pub max_message_chars: Option<usize>,
    pub max_tools: Option<usize>,
}

fn default_threshold() -> u32 {
    3
}
