//! Standalone mock LLM upstream (OpenAI wire format).

use std::sync::Arc;

use clap::Parser;
use sluice_perf::mock::{serve, MockOptions, MockState};

#[derive(Parser)]
#[command(name = "sluice-mock", about = "Fast, scriptable mock LLM provider")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    options: MockOptions,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-mock: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sluice-mock: bind {}: {e}", cli.listen);
                return std::process::ExitCode::FAILURE;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            println!("sluice-mock listening on http://{addr}");
        }
        serve(listener, Arc::new(MockState::new(cli.options))).await;
        std::process::ExitCode::SUCCESS
    })
}
