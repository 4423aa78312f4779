//! Responses Sluice writes itself: JSON bodies and errors.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use pingora::proxy::Session;

use super::head::{Head, Headers, OWN};
use super::RequestCtx;
use crate::errors::GatewayError;

pub async fn json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    ctx: &RequestCtx,
) -> Result<(), GatewayError> {
    json_with(session, status, body, None, ctx).await
}

async fn json_with(
    session: &mut Session,
    status: u16,
    body: Bytes,
    retry_after: Option<u64>,
    ctx: &RequestCtx,
) -> Result<(), GatewayError> {
    let status = StatusCode::from_u16(status)
        .map_err(|e| GatewayError::Internal(format!("response head: {e}")))?;
    let mut resp = Head::new(status, OWN);
    resp.put(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(s) = retry_after {
        resp.put(http::header::RETRY_AFTER, s.into());
    }
    resp.put(http::header::CONTENT_LENGTH, body.len().into());
    super::admit::headers(&mut resp, ctx);
    super::admit::answering(ctx);
    session
        .write_response_header(resp.done(), false)
        .await
        .map_err(|_| GatewayError::ClientGone)?;
    session
        .write_response_body(Some(body), true)
        .await
        .map_err(|_| GatewayError::ClientGone)
}

/// Renders `err` in the inbound API's error shape.
pub async fn error(session: &mut Session, err: &GatewayError, ctx: &RequestCtx) {
    if matches!(err, GatewayError::BodyTooLarge { .. }) {
        // The rest of the body may be unread: don't reuse this connection.
        session.set_keepalive(None);
    }
    let body = err.body(ctx.inbound);
    let _ = json_with(session, err.status(), body, err.retry_after(), ctx).await;
}
