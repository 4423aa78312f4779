//! Reading untrusted JSON with errors that name the offending field.

use serde_json::{Map, Value};

use crate::error::CodecError;

pub type Obj = Map<String, Value>;

pub fn parse_object(body: &[u8]) -> Result<Obj, CodecError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CodecError::invalid(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(CodecError::invalid(format!("Invalid JSON body: {e}"))),
    }
}

/// Parses an upstream body that must be a JSON object.
pub fn upstream_object(
    body: &[u8],
    format: &'static str,
    what: &'static str,
) -> Result<Obj, CodecError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(upstream(format, what, "not a JSON object")),
        Err(e) => Err(upstream(format, what, e.to_string())),
    }
}

pub fn upstream(format: &'static str, what: &'static str, detail: impl Into<String>) -> CodecError {
    CodecError::Upstream {
        format,
        what,
        detail: detail.into(),
    }
}

fn type_error(path: &str, expected: &str) -> CodecError {
    CodecError::invalid(format!("'{path}' must be {expected}"))
}

pub fn opt_str<'a>(o: &'a Obj, key: &str, path: &str) -> Result<Option<&'a str>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(type_error(&join(path, key), "a string")),
    }
}

pub fn req_str<'a>(o: &'a Obj, key: &str, path: &str) -> Result<&'a str, CodecError> {
    opt_str(o, key, path)?.ok_or_else(|| {
        CodecError::invalid(format!("Missing required parameter: '{}'", join(path, key)))
    })
}

pub fn opt_f64(o: &Obj, key: &str, path: &str) -> Result<Option<f64>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(type_error(&join(path, key), "a number")),
    }
}

pub fn opt_u32(o: &Obj, key: &str, path: &str) -> Result<Option<u32>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| type_error(&join(path, key), "a non-negative integer")),
        Some(_) => Err(type_error(&join(path, key), "an integer")),
    }
}

pub fn opt_i64(o: &Obj, key: &str, path: &str) -> Result<Option<i64>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| type_error(&join(path, key), "an integer")),
        Some(_) => Err(type_error(&join(path, key), "an integer")),
    }
}

pub fn opt_bool(o: &Obj, key: &str, path: &str) -> Result<Option<bool>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(type_error(&join(path, key), "a boolean")),
    }
}

pub fn opt_obj<'a>(o: &'a Obj, key: &str, path: &str) -> Result<Option<&'a Obj>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(type_error(&join(path, key), "an object")),
    }
}

pub fn opt_array<'a>(
    o: &'a Obj,
    key: &str,
    path: &str,
) -> Result<Option<&'a Vec<Value>>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(type_error(&join(path, key), "an array")),
    }
}

pub fn as_obj<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, CodecError> {
    v.as_object().ok_or_else(|| type_error(path, "an object"))
}

/// A string or an array of strings (OpenAI's `stop`).
pub fn strings(o: &Obj, key: &str, path: &str) -> Result<Vec<String>, CodecError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| type_error(&join(path, key), "a string or an array of strings"))
            })
            .collect(),
        Some(_) => Err(type_error(
            &join(path, key),
            "a string or an array of strings",
        )),
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Lenient readers for upstream bodies: absent or mistyped reads as absent.
pub fn u64_at(o: &Obj, key: &str) -> u64 {
    o.get(key).and_then(Value::as_u64).unwrap_or(0)
}

pub fn str_at<'a>(o: &'a Obj, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

/// Tool-call arguments as a JSON object for formats that carry objects.
pub fn arguments_object(args: &str, path: &str) -> Result<Value, CodecError> {
    if args.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(CodecError::invalid(format!(
            "'{path}' must be a JSON object encoded as a string"
        ))),
    }
}
