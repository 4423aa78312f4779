//! Stage `decode` for the same-format fast path: one validating pass over
//! the JSON that borrows what routing needs (model, stream flag) and notes
//! where the `model` value sits, so it can be swapped without re-serializing.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_providers::{ChatRequest, TextRequest};

use self::messages::{Count, Messages, Texts};

use super::read::Endpoint;
use crate::errors::GatewayError;

pub struct Probe<'a> {
    pub model: Cow<'a, str>,
    /// Byte range of the `model` value (with its quotes) in the body.
    pub model_span: Range<usize>,
    pub stream: bool,
    /// `max_completion_tokens`, else `max_tokens`, when a number (else the
    /// upstream judges it).
    pub max_tokens: Option<u64>,
    /// `n` or `best_of` (the larger): completions this request may produce.
    pub choices: u64,
    /// The request's texts, when asked for and it holds text alone.
    pub texts: Option<TextRequest<'a>>,
}

/// Reservations never count more than this per completion: no model writes
/// as much, and it keeps the accounting arithmetic far from overflow.
const MAX_RESERVED_TOKENS: u64 = 1 << 32;
const MAX_CHOICES: u64 = 1 << 10;

#[derive(Deserialize)]
struct Fields<'a, M> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "stream_flag")]
    stream: Option<bool>,
    messages: Option<M>,
    /// Declared tools: filters count and limit them, so a request with
    /// them is decoded, not seen through its texts.
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    best_of: Option<&'a RawValue>,
}

fn stream_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Option::<bool>::deserialize(d)
        .map_err(|e| de::Error::custom(format!("'stream' must be a boolean ({e})")))
}

pub fn probe(endpoint: Endpoint, body: &[u8]) -> Result<Probe<'_>, GatewayError> {
    probe_with::<Count>(endpoint, body, None)
}

/// `probe`, reading the texts of an OpenAI chat request too (for filters
/// that only look): same answers, same errors. The body is checked to be
/// UTF-8 once, whole, so the texts borrowed from it are not checked again
/// one by one (about half the pass's cost on a 1 KB prompt).
pub fn probe_texts(endpoint: Endpoint, body: &[u8]) -> Result<Probe<'_>, GatewayError> {
    match (endpoint, std::str::from_utf8(body)) {
        (Endpoint::ChatCompletions, Ok(text)) => {
            probe_with::<Texts<'_>>(endpoint, body, Some(text))
        }
        _ => probe(endpoint, body),
    }
}

/// `text` is `body` as a `str`, when the caller has checked it is one.
fn probe_with<'a, M: Messages<'a>>(
    endpoint: Endpoint,
    body: &'a [u8],
    text: Option<&'a str>,
) -> Result<Probe<'a>, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::BadRequest(
            "The request body is empty; expected a JSON object".into(),
        ));
    }
    let f: Fields<'_, M> = match text {
        Some(text) => serde_json::from_str(text),
        None => serde_json::from_slice(body),
    }
    .map_err(|e| GatewayError::BadRequest(format!("Invalid JSON body: {e}")))?;
    let raw = f.model.ok_or_else(|| {
        GatewayError::BadRequest("You must provide a model parameter ('model')".into())
    })?;
    // Borrowed unless escaped (a `Cow<str>` would always be a new `String`).
    let model: Cow<'_, str> = match serde_json::from_str::<&str>(raw.get()) {
        Ok(name) => Cow::Borrowed(name),
        Err(_) => Cow::Owned(
            serde_json::from_str::<String>(raw.get())
                .map_err(|_| GatewayError::BadRequest("'model' must be a string".into()))?,
        ),
    };
    if model.is_empty() {
        return Err(GatewayError::BadRequest("'model' must not be empty".into()));
    }
    // The raw value borrows from `body`, so its address gives its offset.
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    let model_span = start..start + raw.get().len();
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::CountTokens => {
            match f.messages.as_ref().map(M::count) {
                None => {
                    return Err(GatewayError::BadRequest(
                        "Missing required parameter: 'messages'".into(),
                    ))
                }
                Some(0) => {
                    return Err(GatewayError::BadRequest(
                        "'messages' must contain at least one message".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        Endpoint::Completions if f.prompt.is_none() => {
            return Err(GatewayError::BadRequest(
                "Missing required parameter: 'prompt'".into(),
            ))
        }
        Endpoint::Embeddings if f.input.is_none() => {
            return Err(GatewayError::BadRequest(
                "Missing required parameter: 'input'".into(),
            ))
        }
        _ => {}
    }
    let stream = f.stream.unwrap_or(false);
    if stream && !endpoint.can_stream() {
        return Err(GatewayError::BadRequest(
            "'stream' is not supported on this endpoint".into(),
        ));
    }
    let number = |v: Option<&RawValue>| v.and_then(|v| v.get().parse::<u64>().ok());
    // Completions generated per request: each may use max_tokens.
    let choices = number(f.best_of)
        .max(number(f.n))
        .unwrap_or(1)
        .clamp(1, MAX_CHOICES);
    Ok(Probe {
        model,
        model_span,
        stream,
        max_tokens: number(f.max_completion_tokens)
            .or(number(f.max_tokens))
            .map(|m| m.min(MAX_RESERVED_TOKENS)),
        choices,
        texts: f.messages.and_then(M::texts).filter(|_| f.tools.is_none()),
    })
}

/// The probe of a chat request already decoded whole, where every request
/// is decoded anyway: its fields from the decoded request and the `model`
/// value found by a byte scan, so the body is parsed once, not twice.
/// `None` when anything is unusual (an escaped model name, a field the
/// probe reads that the decoder does not): the caller then probes, so
/// answers and errors are the same either way.
pub fn from_decoded<'a>(body: &'a [u8], req: &ChatRequest) -> Option<Probe<'a>> {
    if req.model.is_empty()
        || req.messages.is_empty()
        || ["n", "best_of", "max_tokens", "max_completion_tokens"]
            .iter()
            .any(|k| req.extra.contains_key(*k))
    {
        return None;
    }
    // One `model` key, and no key written with escapes that might be a
    // second (the decoder keeps the last; the probe refuses duplicates).
    let mut start = None;
    for (key, at) in sluice_providers::json_scan::members(body) {
        if key.contains(&b'\\') || (key == b"model" && start.replace(at).is_some()) {
            return None;
        }
    }
    let start = start?;
    let rest = body[start..].strip_prefix(b"\"")?;
    let len = memchr::memchr2(b'"', b'\\', rest).filter(|&k| rest[k] == b'"')?;
    let name = &rest[..len];
    if name != req.model.as_bytes() {
        return None;
    }
    Some(Probe {
        model: Cow::Borrowed(std::str::from_utf8(name).ok()?),
        model_span: start..start + len + 2,
        stream: req.stream,
        max_tokens: req.max_tokens.map(u64::from),
        choices: req.n.map_or(1, u64::from).clamp(1, MAX_CHOICES),
        texts: None,
    })
}

/// The body with the model value replaced; shares `body` when nothing changes.
pub fn swap_model(body: &Bytes, span: Range<usize>, new_json: &[u8]) -> Bytes {
    if &body[span.clone()] == new_json {
        return body.clone();
    }
    let mut out = BytesMut::with_capacity(body.len() - span.len() + new_json.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(new_json);
    out.extend_from_slice(&body[span.end..]);
    out.freeze()
}

mod messages;
#[cfg(test)]
mod tests;
