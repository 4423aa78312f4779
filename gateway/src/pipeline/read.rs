//! Stage `read`: which endpoint, and the bounded request body.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use sluice_providers::Format;

use crate::errors::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
    /// Anthropic Messages inbound.
    Messages,
    CountTokens,
    /// The caller's own key, limits and budget.
    KeyInfo,
}

impl Endpoint {
    pub fn can_stream(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Messages
        )
    }

    /// The API format the client speaks on this endpoint.
    pub fn format(self) -> Format {
        match self {
            Endpoint::Messages | Endpoint::CountTokens => Format::Anthropic,
            _ => Format::OpenAi,
        }
    }

    /// The format from the path alone, for errors raised before routing.
    pub fn format_of_path(path: &str) -> Format {
        if path.starts_with("/v1/messages") {
            Format::Anthropic
        } else {
            Format::OpenAi
        }
    }
}

pub fn endpoint(method: &http::Method, path: &str) -> Result<Endpoint, GatewayError> {
    let path = path.split('?').next().unwrap_or(path);
    let (ep, allowed) = match path.trim_end_matches('/') {
        "/v1/chat/completions" => (Endpoint::ChatCompletions, "POST"),
        "/v1/completions" => (Endpoint::Completions, "POST"),
        "/v1/embeddings" => (Endpoint::Embeddings, "POST"),
        "/v1/models" => (Endpoint::Models, "GET"),
        "/v1/messages" => (Endpoint::Messages, "POST"),
        "/v1/messages/count_tokens" => (Endpoint::CountTokens, "POST"),
        "/v1/key/info" => (Endpoint::KeyInfo, "GET"),
        _ => {
            return Err(GatewayError::NotFound(format!(
                "Unknown request URL: {path}"
            )))
        }
    };
    if method.as_str() != allowed {
        return Err(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allowed,
        });
    }
    Ok(ep)
}

/// Reads the whole body, refusing more than `limit` bytes (early when the
/// client declares a larger `content-length`).
pub async fn body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await
            .map_err(|_| GatewayError::ClientGone)?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(GatewayError::BodyTooLarge { limit });
                }
                if buf.is_empty() && session.as_downstream_mut().is_body_done() {
                    // Common case: the body arrived in one piece; no copy.
                    return Ok(chunk);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(GatewayError::BadRequest(format!(
                    "Could not read the request body: {e}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_paths_and_methods() {
        let post = http::Method::POST;
        assert_eq!(
            endpoint(&post, "/v1/chat/completions").unwrap(),
            Endpoint::ChatCompletions
        );
        assert_eq!(
            endpoint(&post, "/v1/embeddings/").unwrap(),
            Endpoint::Embeddings
        );
        assert_eq!(
            endpoint(&http::Method::GET, "/v1/models?x=1").unwrap(),
            Endpoint::Models
        );
        assert_eq!(
            endpoint(&http::Method::GET, "/v1/chat/completions")
                .unwrap_err()
                .status(),
            405
        );
        assert_eq!(endpoint(&post, "/v2/nope").unwrap_err().status(), 404);
    }
}
