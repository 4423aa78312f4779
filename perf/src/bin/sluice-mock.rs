//! Standalone mock LLM upstream speaking the OpenAI, Azure OpenAI, Anthropic
//! Messages and Gemini wire formats (chosen by request path).

use std::sync::Arc;

use clap::Parser;
use sluice_perf::mock::{serve, MockOptions, MockState};

#[derive(Parser)]
#[command(
    name = "sluice-mock",
    about = "Fast, scriptable mock LLM provider (OpenAI, Azure OpenAI, Anthropic, Gemini)",
    after_help = "Endpoints, chosen by path:\n  \
        OpenAI     POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models\n  \
        Azure      POST /openai/deployments/{deployment}/chat/completions|completions|embeddings?api-version=...\n  \
        Anthropic  POST /v1/messages, /v1/messages/count_tokens (anthropic-version header required)\n  \
        Gemini     POST /v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse,\n             \
        :countTokens, :embedContent, :batchEmbedContents; GET /v1beta/models\n\n\
        Per-request headers: x-mock-ttft-ms, x-mock-itl-ms, x-mock-tokens, x-mock-echo,\n\
        x-mock-fault (status=N|reset|stall|malformed|truncate), x-mock-fault-after, x-mock-retry-after.\n\
        Declared tools are called deterministically in every format."
)]
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
