//! Stage `relay` for translated responses: errors and whole bodies are
//! re-rendered in the client's format; streams go event by event through
//! a `StreamTranslator`, each client event written as soon as it is complete.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use sluice_filters::ChainRun;
use sluice_providers::{EventHook, Format, StreamEvent, StreamTranslator};

use super::dispatch::upstream_error;
use super::head::{Head, Headers, OWN, X_SLUICE_DROPPED_PARAMS, X_SLUICE_PROVIDER};
use super::relay::{client_gone, write, Batch};
use super::translate::{self, Plan};
use super::RequestCtx;
use crate::errors::GatewayError;
use crate::upstream::Provider;

/// Bound on an upstream body held whole (for translation, or until complete).
pub const MAX_HELD_BODY: usize = 64 << 20;

pub struct Relay<'a> {
    pub provider: &'a Provider,
    pub plan: Plan,
    pub inbound: Format,
    pub dropped: Option<&'a str>,
    /// The model name the client asked for, for responses that name none.
    pub model: &'a str,
    /// Longest silence between two reads of the upstream body.
    pub idle: std::time::Duration,
    /// After a client disconnect, read the upstream to its end for exact usage.
    pub drain: bool,
}

/// What `Relay::run` did with a 2xx answer.
pub enum Rendered {
    /// Relayed it as a stream, to its end.
    Streamed,
    /// Rendered it whole, not yet written.
    Whole(Box<ResponseHeader>, Bytes),
}

/// The request's filters, if any, between stream decoding and encoding.
struct Hook(Option<ChainRun>);

impl EventHook for Hook {
    fn events(&mut self, events: &mut Vec<StreamEvent>) {
        if let Some(run) = &mut self.0 {
            run.events(events);
        }
    }

    fn end(&mut self, events: &mut Vec<StreamEvent>) {
        if let Some(run) = &mut self.0 {
            run.end(events);
        }
    }
}

/// A head for a body Sluice re-rendered: the upstream's status, its
/// rate-limit hints, and who served it.
pub fn plain_head(
    status: StatusCode,
    content_type: &'static str,
    upstream: Option<&ResponseHeader>,
    provider: &Provider,
) -> Head {
    let mut h = Head::new(status, OWN + 4);
    h.put(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(v) = &provider.name_header {
        h.put(X_SLUICE_PROVIDER, v.clone());
    }
    // Rate-limit hints stay meaningful across formats.
    const HINTS: [HeaderName; 3] = [
        http::header::RETRY_AFTER,
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("request-id"),
    ];
    for name in HINTS {
        if let Some(v) = upstream.and_then(|u| u.headers.get(&name)) {
            let v = v.clone();
            h.put(name, v);
        }
    }
    h
}

impl Relay<'_> {
    fn head(
        &self,
        status: StatusCode,
        content_type: &'static str,
        up: &HttpSession,
        ctx: &RequestCtx,
    ) -> Head {
        let mut h = plain_head(status, content_type, up.response_header(), self.provider);
        if let Some(d) = self.dropped {
            h.put_str(X_SLUICE_DROPPED_PARAMS, d);
        }
        for (name, value) in ctx.filters.iter().flat_map(|f| f.cx.headers.iter()) {
            if let Ok(n) = HeaderName::try_from(*name) {
                h.put_str(n, value);
            }
        }
        super::answer::target_headers(&mut h, ctx);
        h
    }

    /// Relays a 2xx stream, or renders a whole answer for the caller to
    /// write once the upstream connection is back in the pool; the head has
    /// been read. `body`: the whole upstream body when it was already read.
    pub async fn run(
        &self,
        session: &mut Session,
        up: &mut HttpSession,
        ctx: &mut RequestCtx,
        body: Option<Bytes>,
    ) -> Result<Rendered, GatewayError> {
        let status = up.response_header().map_or(StatusCode::OK, |h| h.status);
        ctx.status = status.as_u16();
        let is_sse = up.response_header().is_some_and(|h| {
            h.headers
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        });
        if ctx.stream && is_sse {
            return self
                .stream(session, up, ctx)
                .await
                .map(|()| Rendered::Streamed);
        }
        if ctx.stream {
            return Err(GatewayError::UpstreamBroken {
                provider: self.provider.name.clone(),
                cause: "asked for a stream, got a plain body".into(),
            });
        }
        let body = match body {
            Some(b) => b,
            None => self.read_all(session, up).await?,
        };
        let out = translate::response_body(
            self.plan,
            self.inbound,
            &body,
            self.provider,
            self.model,
            ctx.filters.as_mut(),
        )?;
        let mut head = self.head(status, "application/json", up, ctx);
        head.put(http::header::CONTENT_LENGTH, out.len().into());
        Ok(Rendered::Whole(head.done(), out))
    }

    async fn read_all(
        &self,
        session: &mut Session,
        up: &mut HttpSession,
    ) -> Result<Bytes, GatewayError> {
        up.set_read_timeout(Some(self.idle));
        let mut buf = BytesMut::new();
        loop {
            let chunk = tokio::select! {
                c = up.read_response_body() => c,
                _ = client_gone(session) => return Err(GatewayError::ClientGone),
            };
            match chunk {
                Ok(Some(b)) => {
                    if buf.len() + b.len() > MAX_HELD_BODY {
                        return Err(GatewayError::UpstreamBroken {
                            provider: self.provider.name.clone(),
                            cause: format!("response body over {MAX_HELD_BODY} bytes"),
                        });
                    }
                    buf.extend_from_slice(&b);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(e) => {
                    return Err(upstream_error(
                        self.provider,
                        &e,
                        "reading the response body",
                    ))
                }
            }
        }
    }

    async fn stream(
        &self,
        session: &mut Session,
        up: &mut HttpSession,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let Plan::Chat {
            upstream,
            include_usage,
        } = self.plan
        else {
            return Err(GatewayError::Internal("stream without a chat plan".into()));
        };
        let mut head = self.head(StatusCode::OK, "text/event-stream", up, ctx);
        head.put(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        head.chunked_unless_sized(session.req_header().version);
        super::admit::answering(ctx);
        session
            .write_response_header(head.done(), false)
            .await
            .map_err(|_| GatewayError::ClientGone)?;
        let mut tr = StreamTranslator::with_hook(
            upstream.codec().stream_decoder(&translate::meta()),
            self.inbound.codec().stream_encoder(include_usage),
            ctx.snapshot.max_stream_event,
            Hook(ctx.filters.take()),
        );
        let result = self.pump(session, up, ctx, &mut tr).await;
        ctx.filters = tr.hook.0.take();
        result
    }

    async fn pump(
        &self,
        session: &mut Session,
        up: &mut HttpSession,
        ctx: &mut RequestCtx,
        tr: &mut StreamTranslator<Hook>,
    ) -> Result<(), GatewayError> {
        up.set_read_timeout(Some(self.idle));
        let mut out = Vec::with_capacity(4096);
        let mut batch = Batch::default();
        loop {
            let chunk = tokio::select! {
                c = batch.read(up) => c,
                _ = client_gone(session) => {
                    self.after_disconnect(up, tr, &mut batch).await;
                    return Err(GatewayError::ClientGone);
                }
            };
            let (fed, end) = match chunk {
                Ok(Some(b)) => (tr.feed(&b, &mut out), false),
                Ok(None) => (tr.finish(&mut out), true),
                Err(e) => {
                    let err = upstream_error(self.provider, &e, "reading the response body");
                    tr.abandon();
                    return self.fail(session, ctx, out, err).await;
                }
            };
            if let Err(e) = fed {
                let err = GatewayError::UpstreamBroken {
                    provider: self.provider.name.clone(),
                    cause: e.to_string(),
                };
                tr.abandon();
                return self.fail(session, ctx, out, err).await;
            }
            if !out.is_empty() {
                let sent = write(session, ctx, Bytes::from(std::mem::take(&mut out))).await;
                if let Err(e) = sent {
                    if !end {
                        // Gone mid-stream: the usage still has to be known.
                        self.after_disconnect(up, tr, &mut batch).await;
                    }
                    return Err(e);
                }
            }
            if end {
                break;
            }
        }
        session
            .write_response_body(None, true)
            .await
            .map_err(|_| GatewayError::ClientGone)
    }

    /// The client left mid-stream: either read the upstream to its end so
    /// usage is exact (bounded by the request's deadline), or count what
    /// arrived.
    async fn after_disconnect(
        &self,
        up: &mut HttpSession,
        tr: &mut StreamTranslator<Hook>,
        batch: &mut Batch,
    ) {
        if self.drain && tr.hook.0.is_some() {
            let mut sink = Vec::new();
            loop {
                sink.clear();
                // Through the batch: an end or fault it already met is
                // answered first.
                match batch.read(up).await {
                    Ok(Some(b)) => {
                        if tr.feed(&b, &mut sink).is_err() {
                            break;
                        }
                    }
                    Ok(None) => {
                        let _ = tr.finish(&mut sink);
                        return;
                    }
                    Err(_) => break,
                }
            }
        }
        tr.abandon();
    }

    /// Ends the client's stream with what was translated and one terminal error event.
    async fn fail(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut out: Vec<u8>,
        err: GatewayError,
    ) -> Result<(), GatewayError> {
        out.extend_from_slice(&err.sse_event(self.inbound));
        let _ = write(session, ctx, Bytes::from(out)).await;
        let _ = session.write_response_body(None, true).await;
        ctx.mid_stream_error = true;
        Err(err)
    }
}
