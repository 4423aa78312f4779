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

/// Azure OpenAI's paths, `/openai/deployments/{name}/{operation}`, so its
/// SDKs work unchanged: the endpoint and the deployment, which names the model.
pub fn azure(
    method: &http::Method,
    path: &str,
) -> Option<Result<(Endpoint, String), GatewayError>> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let (name, op) = rest.split_once('/')?;
    let ep = match op.trim_end_matches('/') {
        "chat/completions" => Endpoint::ChatCompletions,
        "completions" => Endpoint::Completions,
        "embeddings" => Endpoint::Embeddings,
        _ => return None,
    };
    if method != http::Method::POST {
        return Some(Err(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allowed: "POST",
        }));
    }
    let name = percent_decode(name);
    Some(Ok((ep, name)))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body with `"model": <name>` first, unless it names a model already.
pub fn with_model(body: bytes::Bytes, name: &str) -> bytes::Bytes {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        model: Option<&'a serde_json::value::RawValue>,
    }
    let named = serde_json::from_slice::<Named<'_>>(&body).is_ok_and(|n| n.model.is_some());
    let Some(start) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return body;
    };
    if named || body[start] != b'{' {
        return body;
    }
    let model = serde_json::Value::String(name.to_string()).to_string();
    let rest = &body[start + 1..];
    let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
    let mut out = Vec::with_capacity(body.len() + model.len() + 12);
    out.extend_from_slice(b"{\"model\":");
    out.extend_from_slice(model.as_bytes());
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    bytes::Bytes::from(out)
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

    #[test]
    fn azure_paths_name_the_model() {
        let post = http::Method::POST;
        let (ep, name) = azure(&post, "/openai/deployments/gpt%2D4o/chat/completions")
            .unwrap()
            .unwrap();
        assert_eq!((ep, name.as_str()), (Endpoint::ChatCompletions, "gpt-4o"));
        assert!(azure(&post, "/openai/deployments/x/images").is_none());
        assert_eq!(
            azure(&http::Method::GET, "/openai/deployments/x/embeddings")
                .unwrap()
                .unwrap_err()
                .status(),
            405
        );
        let b = |s: &str| bytes::Bytes::from(s.to_string());
        assert_eq!(
            with_model(b(r#" {"messages":[]}"#), "d\"q"),
            b(r#"{"model":"d\"q","messages":[]}"#)
        );
        assert_eq!(with_model(b("{}"), "d"), b(r#"{"model":"d"}"#));
        let named = b(r#"{"model":"keep","input":"x"}"#);
        assert_eq!(with_model(named.clone(), "d"), named);
    }
}
