//! Secrets appear in the config only as `${ENV_VAR}` references, and never
//! in `Debug`/`Display` output.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A `${NAME}` reference; resolved against the environment at compile time.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub var: String,
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<SecretRef, String> {
        let var = s
            .trim()
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| {
                "secrets must be environment references like ${OPENAI_API_KEY}; literal keys are not accepted".to_string()
            })?;
        Ok(SecretRef {
            var: var.to_string(),
        })
    }

    /// The value, or the name of the missing variable.
    pub fn resolve(&self) -> Result<Secret, String> {
        match std::env::var(&self.var) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            _ => Err(self.var.clone()),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}}}", self.var)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SecretRef::parse(&s).map_err(de::Error::custom)
    }
}

/// A resolved secret value; redacted when printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_env_references() {
        assert_eq!(SecretRef::parse("${A_B}").unwrap().var, "A_B");
        assert!(SecretRef::parse("sk-live-123").is_err());
        assert!(SecretRef::parse("${}").is_err());
        assert!(SecretRef::parse("${A-B}").is_err());
    }

    #[test]
    fn never_printed() {
        let s = Secret("sk-very-secret".into());
        assert!(!format!("{s:?} {s}").contains("very"));
    }
}
