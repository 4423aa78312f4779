//! Responses Sluice writes itself: JSON bodies and errors.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

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
    let mut resp = ResponseHeader::build_no_case(status, Some(12))
        .map_err(|e| GatewayError::Internal(format!("response head: {e}")))?;
    let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
    if let Some(s) = retry_after {
        let _ = resp.insert_header(http::header::RETRY_AFTER, s);
    }
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len());
    super::admit::headers(&mut resp, ctx);
    session
        .write_response_header(Box::new(resp), false)
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
