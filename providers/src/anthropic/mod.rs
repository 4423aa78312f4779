//! Anthropic Messages API.

mod request;
mod response;
mod stream;
mod text_request;

use serde_json::{json, Value};

use crate::canonical::*;
use crate::codec::*;
use crate::error::{fallback_message, CodecError, ErrorKind, ProviderError};
use crate::sse::write_event;

pub struct Anthropic;

/// The status Anthropic uses for an error type.
pub fn status_for(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RequestTooLarge => "request_too_large",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Server => "api_error",
    }
}

fn error_json(err: &ProviderError) -> Value {
    json!({"type": "error", "error": {"type": error_type(err.kind), "message": err.message}})
}

pub fn stream_error(err: &ProviderError) -> Vec<u8> {
    let mut out = Vec::new();
    write_event(&mut out, Some("error"), &error_json(err).to_string());
    out
}

impl Codec for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn path(&self, _op: Operation, _model: &str) -> String {
        "/v1/messages".into()
    }

    fn decode_request(&self, body: &[u8]) -> Result<ChatRequest, CodecError> {
        request::decode(body)
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        opts: &EncodeOptions<'_>,
    ) -> Result<Encoded, CodecError> {
        request::encode(req, opts)
    }

    fn decode_response(
        &self,
        body: &[u8],
        meta: &ResponseMeta,
    ) -> Result<ChatResponse, CodecError> {
        response::decode(body, meta)
    }

    fn encode_response(&self, resp: &ChatResponse) -> Vec<u8> {
        response::encode(resp)
    }

    fn stream_decoder(&self, meta: &ResponseMeta) -> Box<dyn StreamDecoder> {
        Box::new(stream::Decoder::new(meta))
    }

    fn stream_encoder(&self, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::Encoder::new())
    }

    fn decode_error(&self, status: u16, body: &[u8]) -> ProviderError {
        let parsed = serde_json::from_slice::<Value>(body).ok();
        let e = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_object);
        match e {
            Some(e) => {
                let kind = e.get("type").and_then(Value::as_str).unwrap_or("api_error");
                let msg = e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                let mut err = ProviderError::new(status, msg).with_code(kind);
                if status_for(kind) == 529 {
                    err.kind = ErrorKind::Overloaded;
                }
                err
            }
            None => ProviderError::new(status, fallback_message(status, body)),
        }
    }

    fn encode_error(&self, err: &ProviderError) -> Vec<u8> {
        error_json(err).to_string().into_bytes()
    }

    fn encode_stream_error(&self, err: &ProviderError) -> Vec<u8> {
        stream_error(err)
    }
}
