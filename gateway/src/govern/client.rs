//! A one-shot HTTP client for the gateway's own calls (alert webhooks, JWKS
//! documents), over Pingora's connector so TLS works the same as upstream.

use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;

use crate::upstream::BaseUrl;

/// Sends one request; answers the status and the body (bounded).
pub async fn call(
    connector: &Connector,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    tokio::time::timeout(timeout, call_inner(connector, method, url, headers, body))
        .await
        .map_err(|_| format!("{url}: timed out after {timeout:?}"))?
}

async fn call_inner(
    connector: &Connector,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    const MAX_BODY: usize = 4 << 20;
    let base = BaseUrl::parse(url)?;
    let addr = tokio::net::lookup_host((base.host.as_str(), base.port))
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    let mut peer = HttpPeer::new(addr, base.tls, base.host.clone());
    peer.options.alpn = ALPN::H1;
    let path = if base.path.is_empty() {
        "/"
    } else {
        &base.path
    };
    let fail = |e: Box<pingora::Error>| format!("{url}: {e}");
    let mut req = RequestHeader::build(method, path.as_bytes(), None).map_err(fail)?;
    req.insert_header("host", base.authority.as_str())
        .map_err(fail)?;
    for (k, v) in headers {
        req.insert_header(k.to_string(), v.as_str()).map_err(fail)?;
    }
    req.insert_header("content-length", body.len())
        .map_err(fail)?;
    let (mut s, _) = connector.get_http_session(&peer).await.map_err(fail)?;
    s.write_request_header(Box::new(req)).await.map_err(fail)?;
    if !body.is_empty() {
        s.write_request_body(body, true).await.map_err(fail)?;
    }
    s.finish_request_body().await.map_err(fail)?;
    s.read_response_header().await.map_err(fail)?;
    let status = s.response_header().map_or(0, |h| h.status.as_u16());
    let mut out = Vec::new();
    while let Some(chunk) = s.read_response_body().await.map_err(fail)? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(format!("{url}: response larger than {MAX_BODY} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    s.shutdown().await;
    Ok((status, Bytes::from(out)))
}
