//! The connection loop for plain HTTP/1.1 clients.
//!
//! Pingora's own loop waits for a kept-alive connection's next request inside
//! the request's future (14 KB per connection, plus a 4 KiB header buffer),
//! so 10,000 idle clients held about 400 MB. This loop waits on the bare
//! stream and builds the request's future only once bytes arrive: an idle
//! connection holds its socket, its buffers and a few hundred bytes of
//! state. TLS and HTTP/2 connections go through Pingora's loop unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora_timeout::fast_timeout::fast_timeout;

/// How long a connection may sit with no request, as Pingora's keep-alive.
pub const IDLE: Duration = Duration::from_secs(60);
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct Connections<A> {
    app: Arc<A>,
    h2c: bool,
}

impl<A> Connections<A> {
    pub fn new(app: A, h2c: bool) -> Self {
        Connections {
            app: Arc::new(app),
            h2c,
        }
    }
}

enum Arrival {
    Http1,
    /// An h2c preface, or a stream that cannot be peeked: Pingora's loop.
    Pingora,
    Gone,
}

impl<A> Connections<A> {
    /// Waits until the client sends something, without holding any request
    /// state. The peeked bytes stay in the stream for the parser.
    async fn arrival(
        &self,
        stream: &mut Stream,
        shutdown: &mut ShutdownWatch,
        first: bool,
    ) -> Arrival {
        let mut peek = [0u8; H2_PREFACE.len()];
        // The preface can only open a connection; later waits need one byte.
        let want = if first && self.h2c {
            &mut peek[..]
        } else {
            &mut peek[..1]
        };
        let peeked = tokio::select! {
            r = fast_timeout(IDLE, stream.try_peek(want)) => r,
            // Pingora's cleanup ends its kept-alive reads the same way.
            _ = shutdown.changed() => return Arrival::Gone,
        };
        match peeked {
            Ok(Ok(true)) if want.len() == H2_PREFACE.len() && want == H2_PREFACE => {
                Arrival::Pingora
            }
            Ok(Ok(true)) => Arrival::Http1,
            Ok(Ok(false)) => Arrival::Pingora,
            // Closed, reset, or idle too long.
            Ok(Err(_)) | Err(_) => Arrival::Gone,
        }
    }
}

impl<A> Connections<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn serve(self: Arc<Self>, mut stream: Stream, shutdown: ShutdownWatch) {
        let mut watch = shutdown.clone();
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            match self.arrival(&mut stream, &mut watch, first).await {
                Arrival::Http1 => {}
                Arrival::Pingora if first => {
                    let mut next = self.app.process_new(stream, &shutdown).await;
                    while let Some(s) = next {
                        next = self.app.process_new(s, &shutdown).await;
                    }
                    return;
                }
                Arrival::Pingora | Arrival::Gone => return,
            }
            first = false;
            // The request's future lives in its own box, freed before the
            // next wait.
            let Some(reused) = self.request(stream, settings.take(), &shutdown).await else {
                return;
            };
            (stream, settings) = reused.consume();
        }
    }

    /// Not `async`, so the session never sits in the connection's future.
    fn request<'a>(
        &'a self,
        stream: Stream,
        settings: Option<HttpPersistentSettings>,
        shutdown: &'a ShutdownWatch,
    ) -> Pin<Box<dyn Future<Output = Option<ReusedHttpStream>> + Send + 'a>> {
        let mut session = ServerSession::new_http1(stream);
        match settings {
            Some(s) => s.apply_to_session(&mut session),
            None => {
                // What Pingora's loop sets on a new connection.
                session.set_keepalive((!*shutdown.borrow()).then_some(IDLE.as_secs()));
                session.set_keepalive_reuses_remaining(
                    self.app
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
            }
        }
        self.app.process_new_http(session, shutdown)
    }
}

#[async_trait]
impl<A> ServerApp for Connections<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.get_ssl_digest().is_some() || stream.selected_alpn_proto().is_some() {
            return self.app.process_new(stream, shutdown).await;
        }
        // Pingora's task for a connection is sized for its TLS handshake
        // (about 9 KB): a task of our own holds a plain one for less.
        tokio::spawn(self.clone().serve(stream, shutdown.clone()));
        None
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}
