//! Stage `dispatch`: build the upstream request, take a pooled connection,
//! send, and wait for the response head under the first-byte timeout.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::{Error as PError, ErrorType};

use super::read::Endpoint;
use crate::errors::GatewayError;
use crate::peer::PooledPeer;
use crate::proxy::Gateway;
use crate::upstream::Provider;

const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

pub fn request_header(
    client: &RequestHeader,
    provider: &Provider,
    endpoint: Endpoint,
    path: &str,
    body_len: usize,
    stream: bool,
) -> Result<Box<RequestHeader>, GatewayError> {
    use http::header::{self as h, HeaderValue};
    let broken = |cause: String| GatewayError::UpstreamBroken {
        provider: provider.name.clone(),
        cause: format!("cannot build request: {cause}"),
    };
    // Built as plain `http` parts and handed to Pingora once: its own
    // insert_header parses every name again. No case map: names go out
    // lower-case, as HTTP/2 sends them.
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = if endpoint == Endpoint::Models {
        http::Method::GET
    } else {
        http::Method::POST
    };
    parts.uri = http::Uri::try_from(path).map_err(|e| broken(format!("bad path {path:?}: {e}")))?;
    let headers = &mut parts.headers;
    headers.reserve(8 + provider.auth.len() + provider.headers.len());
    headers.insert(h::HOST, provider.host_header.clone());
    headers.insert(
        h::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(h::CONTENT_LENGTH, body_len.into());
    headers.insert(h::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    let accept = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    headers.insert(h::ACCEPT, HeaderValue::from_static(accept));
    for (name, value) in &provider.auth {
        headers.insert(name.clone(), value.clone());
    }
    if !provider.forward.is_empty() {
        for (name, value) in client.headers.iter() {
            if provider.forwards(name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    for (name, value) in &provider.headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(Box::new(RequestHeader::from(parts)))
}

/// Maps a Pingora client error to what the caller should see.
pub fn upstream_error(provider: &Provider, e: &PError, waiting_for: &str) -> GatewayError {
    let cause = format!("{waiting_for}: {e}");
    let provider = provider.name.clone();
    match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout => GatewayError::UpstreamTimeout { provider, cause },
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError
        | ErrorType::SocketError
        | ErrorType::BindError => GatewayError::UpstreamConnect { provider, cause },
        _ => GatewayError::UpstreamBroken { provider, cause },
    }
}

/// Sends the request and reads the response head. A pooled connection that
/// turns out dead before any response byte is retried once on a fresh one:
/// the upstream cannot have acted on a request it never received.
pub async fn open(
    gw: &Gateway,
    peer: &PooledPeer,
    provider: &Provider,
    first_byte: Duration,
    req: Box<RequestHeader>,
    body: Bytes,
) -> Result<HttpSession, GatewayError> {
    // HTTP/1.1 requests go out as one write of head and body: Pingora's own
    // writer sends the head and flushes, which costs a second syscall and
    // TCP segment for every request. Built on the first HTTP/1.1 connection.
    let mut wire: Option<Bytes> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (up, reused) = gw
            .connector
            .get_http_session(peer)
            .await
            .map_err(|e| upstream_error(provider, &e, "connecting"))?;
        let (mut up, written) = match up {
            HttpSession::H1(h1) if body.len() <= ONE_WRITE_MAX => {
                let w = match &wire {
                    Some(w) => w.clone(),
                    None => {
                        let w = head_and_body(&req, &body).ok_or_else(|| refused(provider))?;
                        wire.insert(w).clone()
                    }
                };
                let (h1, sent) = write_whole(h1, peer, &w, first_byte).await;
                (HttpSession::H1(h1), Some(sent))
            }
            up => (up, None),
        };
        up.set_write_timeout(Some(first_byte));
        up.set_read_timeout(Some(first_byte));
        let result = match written {
            Some(Ok(())) => up.read_response_header().await,
            Some(Err(e)) => Err(e),
            None => exchange(&mut up, req.clone(), body.clone()).await,
        };
        match result {
            Ok(()) => return Ok(up),
            Err(e) => {
                up.shutdown().await;
                let timed_out = matches!(
                    e.etype(),
                    ErrorType::ReadTimedout | ErrorType::WriteTimedout
                );
                if reused && attempt == 1 && !timed_out {
                    continue;
                }
                return Err(upstream_error(
                    provider,
                    &e,
                    "waiting for the response head",
                ));
            }
        }
    }
}

/// Bodies up to this size are copied behind the head for one write; a
/// larger one costs more to copy than the second write it saves.
const ONE_WRITE_MAX: usize = 256 * 1024;

/// The request's head and body as one HTTP/1.1 message; `None` for a
/// request line Pingora would refuse.
fn head_and_body(req: &RequestHeader, body: &[u8]) -> Option<Bytes> {
    let mut wire = pingora::protocols::http::v1::client::http_req_header_to_wire(req)?;
    wire.extend_from_slice(body);
    Some(wire.freeze())
}

fn refused(provider: &Provider) -> GatewayError {
    GatewayError::UpstreamBroken {
        provider: provider.name.clone(),
        cause: "cannot build request: forbidden bytes in the request line".into(),
    }
}

/// Writes a whole request on an HTTP/1.1 connection. The session comes
/// back fresh, as the connector makes it, ready to read the response; it
/// was never told of the request, which only matters for HEAD and upgrades
/// (neither is sent here).
async fn write_whole(
    h1: pingora::protocols::http::v1::client::HttpSession,
    peer: &PooledPeer,
    wire: &[u8],
    limit: Duration,
) -> (
    pingora::protocols::http::v1::client::HttpSession,
    pingora::Result<()>,
) {
    use tokio::io::AsyncWriteExt;
    let mut stream = h1.into_inner();
    let write = async {
        stream.write_all(wire).await?;
        stream.flush().await
    };
    let sent = match pingora_timeout::timeout(limit, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(PError::because(
            ErrorType::WriteError,
            "while writing the request",
            e,
        )),
        Err(_) => Err(PError::explain(
            ErrorType::WriteTimedout,
            "while writing the request (timeout)",
        )),
    };
    let h1 = pingora::protocols::http::v1::client::HttpSession::new_with_options(stream, peer);
    (h1, sent)
}

async fn exchange(
    up: &mut HttpSession,
    req: Box<RequestHeader>,
    body: Bytes,
) -> pingora::Result<()> {
    up.write_request_header(req).await?;
    if !body.is_empty() {
        up.write_request_body(body, true).await?;
    }
    up.finish_request_body().await?;
    up.read_response_header().await
}

/// Returns the connection to the pool when its response was read to the end.
pub async fn release(gw: &Gateway, mut up: HttpSession, peer: &PooledPeer) {
    if up.response_done() {
        gw.connector
            .release_http_session(up, peer, Some(Duration::from_secs(60)))
            .await;
    } else {
        up.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_is_the_head_then_the_body() {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.insert_header("host", "up.example").unwrap();
        req.insert_header("content-length", "13").unwrap();
        let wire = head_and_body(&req, b"{\"a\":\"\r\n\r\n\"}").unwrap();
        let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(wire.starts_with(b"POST /v1/chat/completions HTTP/1.1\r\n"));
        assert_eq!(&wire[end..], b"{\"a\":\"\r\n\r\n\"}");
        let head = pingora::protocols::http::v1::client::http_req_header_to_wire(&req).unwrap();
        assert_eq!(&wire[..end], &head[..]);
    }
}
