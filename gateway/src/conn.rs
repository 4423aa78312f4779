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

/// How long a connection may sit with no request: the keep-alive Sluice
/// sets on every answer (`pipeline::handle`).
pub const IDLE: Duration = Duration::from_secs(60);
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct Connections<A> {
    app: Arc<A>,
}

impl<A> Connections<A> {
    pub fn new(app: A) -> Self {
        Connections { app: Arc::new(app) }
    }
}

enum Arrival {
    Http1,
    /// An h2c preface, or a stream that cannot be peeked: Pingora's loop.
    Pingora,
    Gone,
}

impl<A: HttpServerApp> Connections<A> {
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
        let h2c = self.app.server_options().is_some_and(|o| o.h2c);
        let want = if first && h2c {
            &mut peek[..]
        } else {
            &mut peek[..1]
        };
        let peeked = tokio::select! {
            // A request already here is served, as Pingora's loop would.
            biased;
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
            // Bytes of the next request read with the last one (pipelined)
            // are in `settings`, not the stream: no wait for them.
            let carried = settings.as_ref().is_some_and(carries_request);
            let arrived = if carried {
                Arrival::Http1
            } else {
                self.arrival(&mut stream, &mut watch, first).await
            };
            match arrived {
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

/// Whether Pingora carries bytes of the next request over to it. Pingora 0.9
/// has no accessor for them, so this reads the settings' `Debug` form; a
/// struct's `Debug` writes each field name as one piece, so the piece after
/// `pipelined_prefix` and `": "` is the value's start. A form that never
/// names the field counts as carrying: the request is then served at once
/// instead of waited for, which is never wrong. A test pins the form.
fn carries_request(settings: &HttpPersistentSettings) -> bool {
    use std::fmt::Write;
    struct Find {
        next: bool,
        found: Option<bool>,
    }
    impl Write for Find {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if s == ": " {
                return Ok(());
            }
            if self.next {
                self.found = Some(!s.starts_with("None"));
                return Err(std::fmt::Error);
            }
            self.next = s == "pipelined_prefix";
            Ok(())
        }
    }
    let mut f = Find {
        next: false,
        found: None,
    };
    let _ = write!(f, "{settings:?}");
    f.found.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::BytesMut;

    #[tokio::test]
    async fn a_carried_over_request_is_seen() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(client));
        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(Some(60));
        let plain = HttpPersistentSettings::for_session(&session);
        assert!(!carries_request(&plain));
        let mut carrying = HttpPersistentSettings::for_session(&session);
        carrying.set_pipelined_prefix(BytesMut::from(
            &b"POST /v1/chat/completions HTTP/1.1\r\n"[..],
        ));
        assert!(carries_request(&carrying));
        let mut with_context = HttpPersistentSettings::for_session(&session);
        with_context.set_user_context(Box::new(7u8));
        assert!(!carries_request(&with_context));
    }
}
