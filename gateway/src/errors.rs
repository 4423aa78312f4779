//! The gateway's error type, rendered in one place in the inbound API's
//! error shape (OpenAI-style `{"error":{...}}` for now).

use bytes::Bytes;
use serde_json::json;
use sluice_providers::{Format, ProviderError};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("The model '{model}' does not exist. Available models: {available}")]
    UnknownModel { model: String, available: String },
    #[error("Method {method} is not allowed on {path}; use {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("Request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    ModelUnavailable(String),
    /// Every target is ejected, cooling down or at capacity.
    #[error("{message}")]
    NoTarget { message: String, retry_after: u64 },
    #[error("Upstream {provider} unreachable: {cause}")]
    UpstreamConnect { provider: String, cause: String },
    #[error("Upstream {provider} failed: {cause}")]
    UpstreamBroken { provider: String, cause: String },
    #[error("Upstream {provider} timed out: {cause}")]
    UpstreamTimeout { provider: String, cause: String },
    #[error("Client closed the connection")]
    ClientGone,
    #[error("Internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Unauthorized(String),
    /// `code` says what was not allowed (`model_not_allowed`, `endpoint_not_allowed`).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// A request, token or concurrency limit; `kind` is `requests` or `tokens`.
    #[error("{message}")]
    RateLimited {
        kind: &'static str,
        message: String,
        retry_after: u64,
    },
    /// A hard budget would be exceeded.
    #[error("{0}")]
    BudgetExceeded(String),
    /// The shared store is unreachable and configured to fail closed.
    #[error("The limits store is unavailable: {0}")]
    StoreUnavailable(String),
    /// A filter refused the request (PII block, guardrail, input limit).
    #[error("{message}")]
    Rejected {
        status: u16,
        reason: &'static str,
        message: String,
    },
}

impl From<sluice_filters::Reject> for GatewayError {
    fn from(r: sluice_filters::Reject) -> GatewayError {
        GatewayError::Rejected {
            status: r.status,
            reason: r.kind,
            message: r.message,
        }
    }
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadRequest(_) => 400,
            GatewayError::NotFound(_) | GatewayError::UnknownModel { .. } => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::ModelUnavailable(_)
            | GatewayError::NoTarget { .. }
            | GatewayError::StoreUnavailable(_) => 503,
            GatewayError::UpstreamConnect { .. } | GatewayError::UpstreamBroken { .. } => 502,
            GatewayError::UpstreamTimeout { .. } => 504,
            // nginx's convention for "client went away"; never sent, only recorded.
            GatewayError::ClientGone => 499,
            GatewayError::Internal(_) => 500,
            GatewayError::Rejected { status, .. } => *status,
            GatewayError::Unauthorized(_) => 401,
            // Not 429: SDKs retry those, and an exhausted budget stays exhausted.
            GatewayError::BudgetExceeded(_) => 402,
            GatewayError::Forbidden { .. } => 403,
            GatewayError::RateLimited { .. } => 429,
        }
    }

    /// Seconds a client should wait before trying again, when known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::NoTarget { retry_after, .. }
            | GatewayError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::UnknownModel { .. } => "unknown_model",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::ModelUnavailable(_) => "model_unavailable",
            GatewayError::NoTarget { .. } => "no_healthy_target",
            GatewayError::UpstreamConnect { .. } => "upstream_connect",
            GatewayError::UpstreamBroken { .. } => "upstream_broken",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::ClientGone => "client_gone",
            GatewayError::Internal(_) => "internal",
            GatewayError::Rejected { reason, .. } => reason,
            GatewayError::Unauthorized(_) => "unauthorized",
            GatewayError::Forbidden { .. } => "forbidden",
            GatewayError::RateLimited { kind: "tokens", .. } => "rate_limited_tokens",
            GatewayError::RateLimited { .. } => "rate_limited_requests",
            GatewayError::BudgetExceeded(_) => "budget_exceeded",
            GatewayError::StoreUnavailable(_) => "store_unavailable",
        }
    }

    fn openai_type_and_code(&self) -> (&'static str, Option<&'static str>) {
        match self {
            GatewayError::BadRequest(_) => ("invalid_request_error", None),
            GatewayError::NotFound(_) => ("invalid_request_error", Some("not_found")),
            GatewayError::UnknownModel { .. } => ("invalid_request_error", Some("model_not_found")),
            GatewayError::MethodNotAllowed { .. } => {
                ("invalid_request_error", Some("method_not_allowed"))
            }
            GatewayError::BodyTooLarge { .. } => {
                ("invalid_request_error", Some("request_too_large"))
            }
            GatewayError::ModelUnavailable(_) => ("server_error", Some("model_unavailable")),
            GatewayError::NoTarget { .. } => ("server_error", Some("no_healthy_target")),
            GatewayError::UpstreamConnect { .. } => ("server_error", Some("upstream_unreachable")),
            GatewayError::UpstreamBroken { .. } => ("server_error", Some("upstream_error")),
            GatewayError::UpstreamTimeout { .. } => ("server_error", Some("upstream_timeout")),
            GatewayError::ClientGone | GatewayError::Internal(_) => ("server_error", None),
            GatewayError::Rejected { reason, .. } => ("invalid_request_error", Some(*reason)),
            GatewayError::Unauthorized(_) => ("invalid_request_error", Some("invalid_api_key")),
            GatewayError::Forbidden { code, .. } => ("invalid_request_error", Some(*code)),
            GatewayError::RateLimited { kind, .. } => (kind, Some("rate_limit_exceeded")),
            GatewayError::BudgetExceeded(_) => ("insufficient_quota", Some("insufficient_quota")),
            GatewayError::StoreUnavailable(_) => ("server_error", Some("store_unavailable")),
        }
    }

    /// OpenAI's error body.
    pub fn openai_body(&self) -> Bytes {
        let (kind, code) = self.openai_type_and_code();
        let v = json!({"error": {"message": self.to_string(), "type": kind, "param": null, "code": code}});
        Bytes::from(v.to_string())
    }

    /// The error body in the client's API format.
    pub fn body(&self, format: Format) -> Bytes {
        match format {
            Format::OpenAi => self.openai_body(),
            other => Bytes::from(other.codec().encode_error(&self.provider_error())),
        }
    }

    /// A terminal SSE event in the client's API format.
    pub fn sse_event(&self, format: Format) -> Bytes {
        match format {
            Format::OpenAi => self.openai_sse_event(),
            other => Bytes::from(other.codec().encode_stream_error(&self.provider_error())),
        }
    }

    fn provider_error(&self) -> ProviderError {
        ProviderError::new(self.status(), self.to_string()).with_code(self.kind())
    }

    /// The same error as a terminal SSE event, for faults after a stream began.
    pub fn openai_sse_event(&self) -> Bytes {
        let body = self.openai_body();
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_shape() {
        let e = GatewayError::UnknownModel {
            model: "x".into(),
            available: "a, b".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.openai_body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert!(v["error"]["message"].as_str().unwrap().contains("a, b"));
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn sse_event_is_one_data_line() {
        let e = GatewayError::UpstreamBroken {
            provider: "p".into(),
            cause: "reset".into(),
        };
        let ev = e.openai_sse_event();
        assert!(ev.starts_with(b"data: {"));
        assert!(ev.ends_with(b"}\n\n"));
        assert_eq!(ev.iter().filter(|b| **b == b'\n').count(), 2);
    }
}
