//! HTTP load generator with HDR-histogram latency and JSON output.

use clap::Parser;
use sluice_perf::bench::{html, run, BenchArgs};

#[derive(Parser)]
#[command(
    name = "sluice-bench",
    about = "Load generator for Sluice and LLM upstreams"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-bench: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli.args)) {
        Ok(report) => {
            eprintln!("{}", report.summary());
            let json = serde_json::to_string_pretty(&report).unwrap_or_default();
            println!("{json}");
            let files = [
                (cli.args.out.as_ref(), json),
                (cli.args.html.as_ref(), html(&report)),
            ];
            for (path, text) in files {
                let Some(path) = path else { continue };
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("sluice-bench: write {}: {e}", path.display());
                    return std::process::ExitCode::FAILURE;
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
