//! OpenAI Chat Completions and Embeddings; also Azure OpenAI and every
//! OpenAI-compatible server, which differ only in URL and auth (gateway side).

mod embed;
mod fast;
mod request;
pub(crate) mod response;
mod stream;

use serde_json::{json, Value};

use crate::canonical::*;
use crate::codec::*;
use crate::error::{fallback_message, CodecError, ErrorKind, ProviderError};
use crate::json::Obj;

pub struct OpenAi;

impl Codec for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn path(&self, op: Operation, _model: &str) -> String {
        match op {
            Operation::Chat { .. } => "/chat/completions".into(),
            Operation::Embed { .. } => "/embeddings".into(),
        }
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

    fn stream_encoder(&self, include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::Encoder::new(include_usage))
    }

    fn decode_usage(&self, body: &[u8]) -> Option<Usage> {
        response::usage_only(body)
    }

    fn decode_error(&self, status: u16, body: &[u8]) -> ProviderError {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => match o.get("error") {
                Some(Value::Object(e)) => error_from(status, e),
                Some(Value::String(s)) => ProviderError::new(status, s.clone()),
                _ => ProviderError::new(status, fallback_message(status, body)),
            },
            _ => ProviderError::new(status, fallback_message(status, body)),
        }
    }

    fn encode_error(&self, err: &ProviderError) -> Vec<u8> {
        encode_error(err)
    }

    fn encode_stream_error(&self, err: &ProviderError) -> Vec<u8> {
        stream::stream_error(err)
    }

    fn decode_embed_request(&self, body: &[u8]) -> Result<EmbedRequest, CodecError> {
        embed::decode_request(body)
    }

    fn encode_embed_request(
        &self,
        req: &EmbedRequest,
        model: &str,
    ) -> Result<(Vec<u8>, Operation), CodecError> {
        Ok((
            embed::encode_request(req, model),
            Operation::Embed { batch: true },
        ))
    }

    fn decode_embed_response(&self, body: &[u8]) -> Result<EmbedResponse, CodecError> {
        embed::decode_response(body)
    }

    fn encode_embed_response(&self, resp: &EmbedResponse, base64: bool) -> Vec<u8> {
        embed::encode_response(resp, base64)
    }
}

pub(crate) fn error_from(status: u16, e: &Obj) -> ProviderError {
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("upstream error")
        .to_string();
    let code = e
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| e.get("type").and_then(Value::as_str));
    let mut err = ProviderError::new(status, message);
    if code == Some("context_length_exceeded") {
        err.kind = ErrorKind::InvalidRequest;
    }
    err.code = code.map(str::to_string);
    err
}

fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::RequestTooLarge => {
            "invalid_request_error"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Overloaded | ErrorKind::Server => "server_error",
    }
}

pub fn encode_error(err: &ProviderError) -> Vec<u8> {
    let body = json!({"error": {
        "message": err.message,
        "type": error_type(err.kind),
        "param": null,
        "code": err.code,
    }});
    body.to_string().into_bytes()
}
