//! Config: YAML → [`schema::RawConfig`] (serde, unknown fields rejected) →
//! [`compile`] → runtime [`crate::snapshot::Snapshot`]. Every problem is
//! reported with file, line, column, field path and a hint.

mod compile;
pub mod governance;
mod locate;
mod models;
pub mod schema;
pub mod secret;
pub mod units;

use std::fmt;
use std::path::Path;

pub use compile::{compile, tls_ca};

/// The default config, compiled into the binary so `sluice` runs anywhere.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../conf/sluice.yaml");
pub const DEFAULT_PATH: &str = "conf/sluice.yaml";

pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn embedded() -> Source {
        Source {
            name: "<embedded conf/sluice.yaml>".into(),
            text: EMBEDDED_DEFAULT.into(),
        }
    }

    /// `path`, or `conf/sluice.yaml` if present, or the embedded default.
    pub fn load(path: Option<&Path>) -> Result<Source, ConfigError> {
        let path = match path {
            Some(p) => p,
            None if Path::new(DEFAULT_PATH).is_file() => Path::new(DEFAULT_PATH),
            None => return Ok(Source::embedded()),
        };
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source { name, text }),
            Err(e) => Err(ConfigError::single(
                &name,
                "",
                format!("cannot read config file: {e}"),
            )),
        }
    }

    pub fn parse(&self) -> Result<schema::RawConfig, ConfigError> {
        serde_yaml::from_str(&self.text).map_err(|e| {
            let loc = e.location();
            let mut message = e.to_string();
            // serde_yaml appends the location; we print it in front instead.
            if let Some(i) = message.rfind(" at line ") {
                message.truncate(i);
            }
            let (path, message) = match message.split_once(": ") {
                Some((p, m)) if !p.contains(' ') => (p.to_string(), m.to_string()),
                _ => (String::new(), message),
            };
            ConfigError {
                file: self.name.clone(),
                problems: vec![Problem {
                    path,
                    message,
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                }],
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub path: String,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub fn single(file: &str, path: &str, message: String) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            problems: vec![Problem {
                path: path.into(),
                message,
                line: None,
                column: None,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = p.line {
                write!(f, ":{line}:{}", p.column.unwrap_or(1))?;
            }
            if p.path.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests;
