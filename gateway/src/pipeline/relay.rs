//! Stage `relay`: the upstream's response head and body to the client, each
//! body chunk written (and, for streams, flushed) as soon as it arrives.

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;

use super::dispatch::upstream_error;
use super::head::{Head, Headers, OWN, X_SLUICE_PROVIDER};
use super::RequestCtx;
use crate::errors::GatewayError;
use crate::upstream::Provider;

/// Response headers that describe the upstream hop, not the message.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
            | "proxy-authenticate"
            | "set-cookie"
            | "alt-svc"
    )
}

/// The client's response head: the upstream's, less its hop-by-hop headers.
pub fn response_header(head: &ResponseHeader, provider: &Provider) -> Head {
    // No case map: names go out lower-case (HTTP/2 style), and each header
    // is one map update of an already parsed name.
    let mut resp = Head::new(head.status, head.headers.len() + OWN);
    for (name, value) in head.headers.iter() {
        if !hop_by_hop(name.as_str()) {
            resp.append(name.clone(), value.clone());
        }
    }
    if let Some(v) = &provider.name_header {
        resp.put(X_SLUICE_PROVIDER, v.clone());
    }
    resp
}

/// Waits until the client goes away (connection closed or h2 stream reset).
pub async fn client_gone(session: &mut Session) {
    loop {
        match session.as_downstream_mut().read_body_or_idle(true).await {
            Ok(Some(_)) => continue,
            _ => return,
        }
    }
}

/// Copies the body. On an upstream fault after the head was sent, a stream
/// gets a terminal error event; other bodies are cut so the client sees the
/// truncation instead of a short "complete" response.
pub async fn body(
    session: &mut Session,
    up: &mut HttpSession,
    provider: &Provider,
    idle: std::time::Duration,
    ctx: &mut RequestCtx,
    is_sse: bool,
    format: sluice_providers::Format,
) -> Result<(), GatewayError> {
    up.set_read_timeout(Some(idle));
    let max_event = ctx.snapshot.max_stream_event;
    let mut events = is_sse.then(|| EventSplitter::new(max_event));
    let mut batch = Batch::default();
    loop {
        let chunk = tokio::select! {
            c = batch.read(up) => c,
            _ = client_gone(session) => return Err(GatewayError::ClientGone),
        };
        match chunk {
            Ok(Some(bytes)) => {
                let bytes = match events.as_mut() {
                    Some(ev) => {
                        ev.complete(bytes)
                            .map_err(|cause| GatewayError::UpstreamBroken {
                                provider: provider.name.clone(),
                                cause,
                            })?
                    }
                    None => Some(bytes),
                };
                if let Some(bytes) = bytes {
                    write(session, ctx, bytes).await?;
                }
            }
            Ok(None) => {
                if let Some(rest) = events.as_mut().and_then(EventSplitter::rest) {
                    write(session, ctx, rest).await?;
                }
                break;
            }
            Err(e) => {
                let err = upstream_error(provider, &e, "reading the response body");
                if is_sse {
                    // The fault is reported in-band; the stream itself ends cleanly.
                    let _ = write(session, ctx, err.sse_event(format)).await;
                    let _ = session.write_response_body(None, true).await;
                    ctx.mid_stream_error = true;
                }
                return Err(err);
            }
        }
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|_| GatewayError::ClientGone)
}

pub(super) async fn write(
    session: &mut Session,
    ctx: &mut RequestCtx,
    bytes: Bytes,
) -> Result<(), GatewayError> {
    if ctx.first_body_at.is_none() {
        ctx.first_body_at = Some(Instant::now());
    }
    ctx.bytes_out += bytes.len();
    session
        .write_response_body(Some(bytes), false)
        .await
        .map_err(|_| GatewayError::ClientGone)
}

/// Upstream body reads, each with whatever else has already arrived:
/// Pingora yields a chunked body one chunk a call, and most servers send an
/// SSE event a chunk, so writing each would cost the client a send per
/// event. What was read after the first chunk is joined to it; an end or a
/// fault met on the way is answered by the next call.
#[derive(Default)]
pub(super) struct Batch {
    after: Option<pingora::Result<Option<Bytes>>>,
}

/// Stop joining chunks at this size: the client gets the bytes flowing.
const BATCH_MAX: usize = 64 << 10;

impl Batch {
    pub(super) async fn read(&mut self, up: &mut HttpSession) -> pingora::Result<Option<Bytes>> {
        if let Some(after) = self.after.take() {
            return after;
        }
        let Some(first) = up.read_response_body().await? else {
            return Ok(None);
        };
        let mut joined: Option<bytes::BytesMut> = None;
        while joined.as_ref().map_or(first.len(), |j| j.len()) < BATCH_MAX {
            match ready_now(up.read_response_body()) {
                Some(Ok(Some(more))) => joined
                    .get_or_insert_with(|| bytes::BytesMut::from(&first[..]))
                    .extend_from_slice(&more),
                Some(end_or_fault) => {
                    self.after = Some(end_or_fault);
                    break;
                }
                None => break,
            }
        }
        Ok(Some(joined.map_or(first, bytes::BytesMut::freeze)))
    }
}

/// The future's output if it is ready at its first poll. A read that is
/// not is dropped before it took anything (Pingora's reads are
/// cancel-safe: `select!` drops them the same way).
fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// Forwards SSE bytes only up to the last complete event, so a stream cut
/// mid-event never shows the client half an event glued to the error event.
struct EventSplitter {
    pending: bytes::BytesMut,
    /// Largest event held while waiting for its end (`server.max_stream_event`).
    max_event: usize,
}

impl EventSplitter {
    fn new(max_event: usize) -> EventSplitter {
        EventSplitter {
            pending: bytes::BytesMut::new(),
            max_event,
        }
    }

    fn complete(&mut self, chunk: Bytes) -> Result<Option<Bytes>, String> {
        if self.pending.is_empty() {
            match last_boundary(&chunk) {
                Some(end) if end == chunk.len() => return Ok(Some(chunk)),
                Some(end) => {
                    self.pending.extend_from_slice(&chunk[end..]);
                    return Ok(Some(chunk.slice(..end)));
                }
                None => {}
            }
        }
        self.pending.extend_from_slice(&chunk);
        let out = last_boundary(&self.pending).map(|end| self.pending.split_to(end).freeze());
        if self.pending.len() > self.max_event {
            return Err(format!("stream event larger than {} bytes", self.max_event));
        }
        Ok(out)
    }

    fn rest(&mut self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.split().freeze())
    }
}

/// End of the last blank line (event terminator) in `buf`: LF LF, LF CR LF or CR CR.
fn last_boundary(buf: &[u8]) -> Option<usize> {
    (1..buf.len()).rev().find_map(|i| {
        let end_lf = buf[i] == b'\n'
            && (buf[i - 1] == b'\n' || (i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'));
        let end_cr = buf[i] == b'\r' && buf[i - 1] == b'\r' && buf.get(i + 1) != Some(&b'\n');
        (end_lf || end_cr).then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_partial_events_at_any_split() {
        let stream = b"data: {\"a\":1}\n\ndata: x\r\n\r\ndata: y\n\ndata: part";
        for split in 0..stream.len() {
            let mut s = EventSplitter::new(1 << 20);
            let mut out = Vec::new();
            for piece in [&stream[..split], &stream[split..]] {
                if let Some(b) = s.complete(Bytes::copy_from_slice(piece)).unwrap() {
                    out.extend_from_slice(&b);
                }
            }
            assert_eq!(out, &stream[..stream.len() - 10], "split {split}");
            assert_eq!(s.rest().unwrap(), &b"data: part"[..]);
        }
    }

    #[test]
    fn bounds_event_size() {
        let mut s = EventSplitter::new(16);
        assert!(s.complete(Bytes::from(vec![b'a'; 17])).is_err());
    }
}
