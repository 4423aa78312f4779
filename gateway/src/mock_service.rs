//! Serves `kind: mock` providers from Sluice itself: the same code as the
//! `sluice-mock` binary, on a loopback port, reached over HTTP like any upstream.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sluice_perf::mock::{serve, MockOptions, MockState};

use crate::config::schema::MockSection;

pub struct MockService {
    listener: Mutex<Option<std::net::TcpListener>>,
    state: Arc<MockState>,
}

impl MockService {
    pub fn new(
        listener: std::net::TcpListener,
        model: &str,
        section: Option<&MockSection>,
    ) -> MockService {
        let mut options = MockOptions {
            models: vec![model.to_string()],
            ..MockOptions::default()
        };
        if let Some(s) = section {
            options.ttft_ms = s.ttft_ms;
            options.itl_ms = s.itl_ms;
            options.tokens = s.tokens.unwrap_or(options.tokens);
            options.echo = s.echo;
        }
        MockService {
            listener: Mutex::new(Some(listener)),
            state: Arc::new(MockState::new(options)),
        }
    }
}

#[async_trait]
impl BackgroundService for MockService {
    // Runs until the process exits, not until shutdown starts: in-flight
    // requests to the mock must be able to finish during the grace period.
    async fn start(&self, _shutdown: ShutdownWatch) {
        let listener = self.listener.lock().ok().and_then(|mut l| l.take());
        let Some(listener) = listener else { return };
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => serve(l, self.state.clone()).await,
            Err(e) => tracing::error!("mock provider cannot listen: {e}"),
        }
    }
}
