//! Responses Sluice writes itself: JSON bodies and errors.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::errors::GatewayError;

pub async fn json(session: &mut Session, status: u16, body: Bytes) -> Result<(), GatewayError> {
    let mut resp = ResponseHeader::build(status, Some(2))
        .map_err(|e| GatewayError::Internal(format!("response head: {e}")))?;
    let _ = resp.insert_header(http::header::CONTENT_TYPE, "application/json");
    let _ = resp.insert_header(http::header::CONTENT_LENGTH, body.len());
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
pub async fn error(session: &mut Session, err: &GatewayError, format: sluice_providers::Format) {
    if matches!(err, GatewayError::BodyTooLarge { .. }) {
        // The rest of the body may be unread: don't reuse this connection.
        session.set_keepalive(None);
    }
    let _ = json(session, err.status(), err.body(format)).await;
}
