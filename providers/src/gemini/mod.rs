//! Google Gemini API (`generateContent`, `streamGenerateContent`, embeddings).
//! Gemini is an upstream format only; clients speak OpenAI or Anthropic.

mod request;
mod response;
mod stream;

use serde_json::{json, Value};

use crate::canonical::*;
use crate::codec::*;
use crate::error::{fallback_message, CodecError, ErrorKind, ProviderError};
use crate::json::*;
use crate::sse::write_event;

pub struct Gemini;

const NAME: &str = "gemini";

fn status_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "INVALID_ARGUMENT",
        ErrorKind::Authentication => "UNAUTHENTICATED",
        ErrorKind::Permission => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::RateLimit => "RESOURCE_EXHAUSTED",
        ErrorKind::Timeout => "DEADLINE_EXCEEDED",
        ErrorKind::Overloaded => "UNAVAILABLE",
        ErrorKind::Server => "INTERNAL",
    }
}

pub(crate) fn error_from(e: &Obj) -> ProviderError {
    let status = e
        .get("code")
        .and_then(Value::as_u64)
        .map_or(500, |c| c as u16);
    let msg = str_at(e, "message").unwrap_or("upstream error");
    let mut err = ProviderError::new(status, msg);
    if let Some(s) = str_at(e, "status") {
        err.code = Some(s.to_string());
    }
    err
}

fn error_json(err: &ProviderError) -> Value {
    json!({"error": {"code": err.status, "message": err.message, "status": status_name(err.kind)}})
}

pub(crate) fn stream_error(err: &ProviderError) -> Vec<u8> {
    let mut out = Vec::new();
    write_event(&mut out, None, &error_json(err).to_string());
    out
}

impl Codec for Gemini {
    fn name(&self) -> &'static str {
        NAME
    }

    fn path(&self, op: Operation, model: &str) -> String {
        match op {
            Operation::Chat { stream: false } => format!("/v1beta/models/{model}:generateContent"),
            Operation::Chat { stream: true } => {
                format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
            }
            Operation::Embed { batch: true } => {
                format!("/v1beta/models/{model}:batchEmbedContents")
            }
            Operation::Embed { batch: false } => format!("/v1beta/models/{model}:embedContent"),
        }
    }

    fn decode_request(&self, _body: &[u8]) -> Result<ChatRequest, CodecError> {
        Err(CodecError::Unsupported(
            "Gemini is not an inbound format".into(),
        ))
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
        Box::<stream::Encoder>::default()
    }

    fn decode_error(&self, status: u16, body: &[u8]) -> ProviderError {
        let v = serde_json::from_slice::<Value>(body).ok();
        let e = v
            .as_ref()
            .and_then(|v| {
                v.get("error")
                    .or_else(|| v.get(0).and_then(|x| x.get("error")))
            })
            .and_then(Value::as_object);
        match e {
            Some(e) => {
                let mut err = error_from(e);
                err.status = status;
                err.kind = ErrorKind::from_status(status);
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

    fn encode_embed_request(
        &self,
        req: &EmbedRequest,
        model: &str,
    ) -> Result<(Vec<u8>, Operation), CodecError> {
        let requests: Vec<Value> = req
            .inputs
            .iter()
            .map(|text| {
                let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
                if let (Some(d), Some(m)) = (req.dimensions, r.as_object_mut()) {
                    m.insert("outputDimensionality".into(), json!(d));
                }
                r
            })
            .collect();
        Ok((
            json!({"requests": requests}).to_string().into_bytes(),
            Operation::Embed { batch: true },
        ))
    }

    fn decode_embed_response(&self, body: &[u8]) -> Result<EmbedResponse, CodecError> {
        let o = upstream_object(body, NAME, "embeddings response")?;
        let values = |e: &Value| -> Vec<f32> {
            e.get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect())
                .unwrap_or_default()
        };
        let vectors = match (o.get("embeddings"), o.get("embedding")) {
            (Some(Value::Array(a)), _) => a.iter().map(values).collect(),
            (_, Some(e)) => vec![values(e)],
            _ => return Err(upstream(NAME, "embeddings response", "no embeddings")),
        };
        Ok(EmbedResponse {
            model: String::new(),
            vectors,
            prompt_tokens: 0,
        })
    }
}
