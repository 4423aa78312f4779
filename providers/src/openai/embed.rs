//! OpenAI embeddings ⇄ canonical.

use base64::Engine;
use serde_json::{json, Value};

use crate::canonical::{EmbedRequest, EmbedResponse};
use crate::error::CodecError;
use crate::json::*;

const NAME: &str = "openai";

pub fn decode_request(body: &[u8]) -> Result<EmbedRequest, CodecError> {
    let o = parse_object(body)?;
    let model = req_str(&o, "model", "")?.to_string();
    let inputs = match o.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Array(_)) => {
            return Err(CodecError::Unsupported(
                "token-array embedding inputs can only go to OpenAI-format upstreams".into(),
            ))
        }
        None | Some(Value::Null) => {
            return Err(CodecError::invalid("Missing required parameter: 'input'"))
        }
        Some(_) => {
            return Err(CodecError::invalid(
                "'input' must be a string or an array of strings",
            ))
        }
    };
    let base64 = match opt_str(&o, "encoding_format", "")? {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(CodecError::invalid(format!(
                "'encoding_format' must be float or base64, not '{other}'"
            )))
        }
    };
    Ok(EmbedRequest {
        model,
        inputs,
        dimensions: opt_u32(&o, "dimensions", "")?,
        base64,
    })
}

pub fn encode_request(req: &EmbedRequest, model: &str) -> Vec<u8> {
    let mut o = json!({"model": model, "input": req.inputs, "encoding_format": "float"});
    if let (Some(d), Some(m)) = (req.dimensions, o.as_object_mut()) {
        m.insert("dimensions".into(), json!(d));
    }
    o.to_string().into_bytes()
}

pub fn decode_response(body: &[u8]) -> Result<EmbedResponse, CodecError> {
    let o = upstream_object(body, NAME, "embeddings response")?;
    let data = o
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| upstream(NAME, "embeddings response", "no 'data' array"))?;
    let mut vectors = Vec::with_capacity(data.len());
    for d in data {
        let v = match d.get("embedding") {
            Some(Value::Array(a)) => a.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect(),
            Some(Value::String(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| upstream(NAME, "embeddings response", e.to_string()))?
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => return Err(upstream(NAME, "embeddings response", "no 'embedding'")),
        };
        vectors.push(v);
    }
    Ok(EmbedResponse {
        model: str_at(&o, "model").unwrap_or("").to_string(),
        vectors,
        prompt_tokens: o
            .get("usage")
            .and_then(Value::as_object)
            .map_or(0, |u| u64_at(u, "prompt_tokens")),
    })
}

pub fn encode_response(r: &EmbedResponse, base64: bool) -> Vec<u8> {
    let data: Vec<Value> = r
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": r.model,
        "usage": {"prompt_tokens": r.prompt_tokens, "total_tokens": r.prompt_tokens},
    })
    .to_string()
    .into_bytes()
}
