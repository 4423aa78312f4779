//! What every wire format implements. Callers hold a `&'static dyn Codec`
//! from `Format::codec`, never a format-specific type.

use crate::canonical::{ChatRequest, ChatResponse, EmbedRequest, EmbedResponse, StreamEvent};
use crate::error::{CodecError, ProviderError};
use crate::sse::SseEvent;

/// Per-target choices for encoding a request upstream.
#[derive(Debug, Clone)]
pub struct EncodeOptions<'a> {
    /// The model name the upstream expects.
    pub model: &'a str,
    /// Used when the target requires `max_tokens` and the client gave none.
    pub default_max_tokens: u32,
    /// Ask the upstream to report usage at the end of a stream.
    pub stream_usage: bool,
}

/// An encoded upstream request.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub body: Vec<u8>,
    /// Request fields the target cannot express and that were left out.
    pub dropped: Vec<String>,
}

/// Where a request goes below the provider's base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat { stream: bool },
    Embed { batch: bool },
}

/// Identity and time for responses Sluice writes itself (ids, timestamps),
/// passed in so codecs stay deterministic.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
}

pub trait Codec: Send + Sync {
    fn name(&self) -> &'static str;

    /// Path (with query) of an operation, relative to the base URL.
    fn path(&self, op: Operation, model: &str) -> String;

    fn decode_request(&self, body: &[u8]) -> Result<ChatRequest, CodecError>;
    fn encode_request(
        &self,
        req: &ChatRequest,
        opts: &EncodeOptions<'_>,
    ) -> Result<Encoded, CodecError>;

    fn decode_response(&self, body: &[u8], meta: &ResponseMeta)
        -> Result<ChatResponse, CodecError>;
    fn encode_response(&self, resp: &ChatResponse) -> Vec<u8>;

    /// A decoder for one upstream stream.
    fn stream_decoder(&self, meta: &ResponseMeta) -> Box<dyn StreamDecoder>;
    /// An encoder for one client stream; `include_usage` is what the client asked for.
    fn stream_encoder(&self, include_usage: bool) -> Box<dyn StreamEncoder>;

    /// Only the usage of a complete response, for callers that forward the
    /// body unchanged. `None` when the body reports none.
    fn decode_usage(&self, body: &[u8]) -> Option<crate::canonical::Usage> {
        let meta = ResponseMeta {
            id: String::new(),
            created: 0,
        };
        self.decode_response(body, &meta).ok().and_then(|r| r.usage)
    }

    fn decode_error(&self, status: u16, body: &[u8]) -> ProviderError;
    fn encode_error(&self, err: &ProviderError) -> Vec<u8>;
    /// An error after a stream began, as one complete SSE event.
    fn encode_stream_error(&self, err: &ProviderError) -> Vec<u8>;

    fn decode_embed_request(&self, body: &[u8]) -> Result<EmbedRequest, CodecError> {
        let _ = body;
        Err(CodecError::Unsupported(format!(
            "{} has no embeddings API",
            self.name()
        )))
    }
    fn encode_embed_request(
        &self,
        req: &EmbedRequest,
        model: &str,
    ) -> Result<(Vec<u8>, Operation), CodecError> {
        let _ = (req, model);
        Err(CodecError::Unsupported(format!(
            "{} has no embeddings API",
            self.name()
        )))
    }
    fn decode_embed_response(&self, body: &[u8]) -> Result<EmbedResponse, CodecError> {
        let _ = body;
        Err(CodecError::Unsupported(format!(
            "{} has no embeddings API",
            self.name()
        )))
    }
    fn encode_embed_response(&self, resp: &EmbedResponse, base64: bool) -> Vec<u8> {
        let _ = (resp, base64);
        Vec::new()
    }
}

/// Upstream SSE events → canonical events, with state across events.
pub trait StreamDecoder: Send {
    fn event(&mut self, ev: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), CodecError>;
    /// The upstream closed the stream. Formats with an explicit terminal
    /// event report its absence as an error (a truncated stream).
    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), CodecError>;
}

/// Canonical events → the client's SSE bytes, with state across events.
pub trait StreamEncoder: Send {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>);
}
