//! Command line: `sluice [--config F] [--listen A] [--admin A]` and `sluice check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{compile, Source};
use crate::metrics::Metrics;
use crate::server::{self, Overrides};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a fast, correct LLM gateway"
)]
pub struct Cli {
    /// Config file (default: conf/sluice.yaml if present, else the embedded default).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listener address, overriding server.listen.
    #[arg(long)]
    listen: Option<String>,
    /// Admin listener address, overriding server.admin_listen.
    #[arg(long)]
    admin: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and exit: 0 when valid, 1 with every problem listed.
    Check,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let source = match Source::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Check) => check(&source),
        None => match server::run(
            source,
            Overrides {
                listen: cli.listen,
                admin: cli.admin,
            },
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(source: &Source) -> ExitCode {
    let result = source.parse().and_then(|raw| {
        let metrics = Metrics::new()
            .map_err(|e| crate::config::ConfigError::single(&source.name, "", e.to_string()))?;
        compile(&raw, source, &Default::default(), &metrics).map(|snap| (raw, snap))
    });
    match result {
        Ok((raw, snap)) => {
            println!(
                "{}: ok ({} providers, {} models{})",
                source.name,
                raw.providers.len(),
                raw.models.len(),
                if snap.unavailable.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; unavailable until their keys are set: {}",
                        snap.unavailable
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn,pingora=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
