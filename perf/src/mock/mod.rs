//! `sluice-mock`: a fast, scriptable LLM upstream speaking the OpenAI,
//! Azure OpenAI, Anthropic Messages and Google Gemini wire formats.
//!
//! Written from the providers' public API references, never from
//! `sluice-providers`. The format is chosen by the request path:
//!
//! | format | endpoints |
//! |---|---|
//! | OpenAI | `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`; `GET /v1/models` |
//! | Azure OpenAI | `POST /openai/deployments/{deployment}/chat/completions`, `/completions`, `/embeddings` (`?api-version=` required) |
//! | Anthropic | `POST /v1/messages`, `/v1/messages/count_tokens` |
//! | Gemini | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent?alt=sse`, `:countTokens`, `:embedContent`, `:batchEmbedContents`; `GET /v1beta/models` |
//!
//! Per-request headers (`x-mock-*`, see [`controls`]) set latency, output
//! length, echo and faults in every format; errors, including injected
//! `status=` faults, use the called format's own error shape. Tool calls
//! follow one deterministic rule in every format (see `tools.rs`).

mod anthropic;
mod azure;
mod common;
mod conn;
pub mod controls;
mod format;
mod gemini;
mod openai;
mod text;
mod tools;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

/// Default behaviour; every value can be overridden per request by a header.
#[derive(Debug, Clone, clap::Args)]
pub struct MockOptions {
    /// Delay before the response head (non-stream: before the whole response).
    #[arg(long = "ttft-ms", default_value_t = 0)]
    pub ttft_ms: u64,
    /// Delay between streamed tokens.
    #[arg(long = "itl-ms", default_value_t = 0)]
    pub itl_ms: u64,
    /// Completion tokens generated per response (capped by `max_tokens`).
    #[arg(long, default_value_t = 16)]
    pub tokens: usize,
    /// Answer with the last user message instead of generated text.
    #[arg(long)]
    pub echo: bool,
    /// Require KEY in each format's credential header: `Authorization: Bearer`
    /// (OpenAI), `api-key` (Azure), `x-api-key` (Anthropic), `x-goog-api-key`
    /// or `?key=` (Gemini).
    #[arg(long = "api-key")]
    pub api_key: Option<String>,
    /// Model ids listed by `GET /v1/models` and `GET /v1beta/models`.
    #[arg(long = "model", default_values_t = vec!["demo".to_string()])]
    pub models: Vec<String>,
    /// Embedding size when the request sets neither `dimensions` (OpenAI)
    /// nor `outputDimensionality` (Gemini).
    #[arg(long = "dimensions", default_value_t = 16)]
    pub dimensions: usize,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            ttft_ms: 0,
            itl_ms: 0,
            tokens: 16,
            echo: false,
            api_key: None,
            models: vec!["demo".to_string()],
            dimensions: 16,
        }
    }
}

/// What the mock received: lets tests check exactly what reached the upstream.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Shared state of one mock server.
#[derive(Debug, Default)]
pub struct MockState {
    pub options: MockOptions,
    /// Requests seen, in arrival order (only when recording is on).
    recorded: Option<Mutex<Vec<Recorded>>>,
    requests: AtomicU64,
    /// Set at run time (tests): a fault for every request, and its `Retry-After`.
    live_fault: Mutex<Option<(controls::Fault, Option<u64>)>>,
    /// Set at run time (tests): latency added before every response head.
    extra_ttft_ms: AtomicU64,
}

impl MockState {
    pub fn new(options: MockOptions) -> Self {
        MockState {
            options,
            ..Default::default()
        }
    }

    /// Keeps a copy of every request; for tests only (memory grows).
    pub fn recording(mut self) -> Self {
        self.recorded = Some(Mutex::new(Vec::new()));
        self
    }

    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        match &self.recorded {
            Some(m) => m.lock().map(|v| v.clone()).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Makes every request fail with `fault` from now on (`None` heals).
    pub fn set_fault(&self, fault: Option<controls::Fault>, retry_after: Option<u64>) {
        if let Ok(mut f) = self.live_fault.lock() {
            *f = fault.map(|f| (f, retry_after));
        }
    }

    /// Adds `ms` before every response head from now on.
    pub fn set_extra_ttft_ms(&self, ms: u64) {
        self.extra_ttft_ms.store(ms, Ordering::Relaxed);
    }

    fn apply_live(&self, c: &mut controls::Controls) {
        c.ttft += Duration::from_millis(self.extra_ttft_ms.load(Ordering::Relaxed));
        if let Some((fault, retry_after)) = self.live_fault.lock().ok().and_then(|f| *f) {
            c.fault = Some(fault);
            c.retry_after = retry_after.or(c.retry_after);
        }
    }

    fn next_id(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed)
    }

    fn record(&self, r: Recorded) {
        if let Some(m) = &self.recorded {
            if let Ok(mut v) = m.lock() {
                v.push(r);
            }
        }
    }

    fn is_recording(&self) -> bool {
        self.recorded.is_some()
    }
}

/// Serves connections from `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, state: Arc<MockState>) {
    let (_keep, stop) = tokio::sync::watch::channel(false);
    serve_until(listener, state, stop).await;
}

/// Like `serve`; when `stop` changes, open connections end too.
async fn serve_until(
    listener: TcpListener,
    state: Arc<MockState>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("mock accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn::handle(stream, state) => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// A mock running on its own task; stops when dropped.
pub struct MockServer {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl MockServer {
    /// Binds 127.0.0.1 on an ephemeral port and serves on the current runtime.
    pub async fn start(state: MockState) -> std::io::Result<MockServer> {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), Arc::new(state)).await
    }

    /// Serves `state` on `addr`: a mock brought back where a stopped one was.
    pub async fn start_at(addr: SocketAddr, state: Arc<MockState>) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve_until(listener, state.clone(), rx));
        Ok(MockServer {
            addr,
            state,
            task,
            stop,
        })
    }

    /// OpenAI-style base URL (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Scheme and authority only, for formats whose paths do not start at `/v1`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockServer {
    /// Like a process gone: the listener closes and so does every connection.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}
