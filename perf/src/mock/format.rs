//! Which wire format a request speaks, decided by its path alone (as a real
//! provider's URL space would), and the per-format hooks the connection
//! loop needs: admission (auth and required headers), routing, errors and
//! the bytes of broken streams.

use super::common::{Ctx, Reply};
use super::{anthropic, azure, gemini, openai};
use crate::http1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
}

impl Format {
    pub fn of_path(path: &str) -> Format {
        let p = path.split('?').next().unwrap_or(path);
        if p.starts_with("/openai/") {
            Format::Azure
        } else if p.starts_with("/v1beta/") || (p.starts_with("/v1/models/") && p.contains(':')) {
            Format::Gemini
        } else if p == "/v1/messages" || p.starts_with("/v1/messages/") {
            Format::Anthropic
        } else {
            Format::OpenAi
        }
    }

    /// An error body in this format's own shape.
    pub fn error(self, status: u16, message: &str, retry_after: Option<u64>) -> Reply {
        match self {
            Format::OpenAi | Format::Azure => openai::error(status, message, retry_after),
            Format::Anthropic => anthropic::error(status, message, retry_after),
            Format::Gemini => gemini::error(status, message, retry_after),
        }
    }

    /// `Some(rejection)` when credentials (only checked if the mock has a key)
    /// or headers the provider insists on are wrong.
    pub fn admit(
        self,
        key: Option<&str>,
        headers: &[httparse::Header<'_>],
        path: &str,
    ) -> Option<Reply> {
        match self {
            Format::OpenAi => {
                let ok = key.is_none_or(|k| {
                    http1::header(headers, "authorization")
                        .and_then(|v| v.strip_prefix(b"Bearer "))
                        .is_some_and(|v| v == k.as_bytes())
                });
                (!ok).then(|| openai::error(401, "Incorrect API key provided.", None))
            }
            Format::Azure => azure::admit(key, headers),
            Format::Anthropic => anthropic::admit(key, headers),
            Format::Gemini => gemini::admit(key, headers, path),
        }
    }

    pub fn route(self, method: &str, path: &str, body: &[u8], cx: &Ctx<'_>) -> Reply {
        match self {
            Format::OpenAi => openai::route(method, path, body, cx),
            Format::Azure => azure::route(method, path, body, cx),
            Format::Anthropic => anthropic::route(method, path, body, cx),
            Format::Gemini => gemini::route(method, path, body, cx),
        }
    }

    /// Headers this provider puts on every response.
    pub fn response_headers(self, id: u64) -> Vec<(&'static str, String)> {
        match self {
            Format::Anthropic => vec![("request-id", format!("req_mock{id:016}"))],
            _ => Vec::new(),
        }
    }

    /// The event a stream ends with when a `status=` fault fires mid-way.
    pub fn stream_error(self, code: u16) -> Vec<u8> {
        match self {
            Format::OpenAi | Format::Azure => openai::stream_error(code),
            Format::Anthropic => anthropic::stream_error(code),
            Format::Gemini => gemini::stream_error(code),
        }
    }

    /// A data line that is not valid JSON.
    pub fn malformed(self) -> &'static [u8] {
        match self {
            Format::OpenAi | Format::Azure => openai::MALFORMED,
            Format::Anthropic => anthropic::MALFORMED,
            Format::Gemini => gemini::MALFORMED,
        }
    }

    /// The stream's normal last event (empty when the format has none).
    pub fn terminal(self) -> &'static [u8] {
        match self {
            Format::OpenAi | Format::Azure => openai::TERMINAL,
            Format::Anthropic => anthropic::TERMINAL,
            Format::Gemini => b"",
        }
    }

    /// The start of an event that the connection drops in the middle of.
    pub fn truncated(self) -> &'static [u8] {
        match self {
            Format::OpenAi | Format::Azure => openai::TRUNCATED,
            Format::Anthropic => anthropic::TRUNCATED,
            Format::Gemini => gemini::TRUNCATED,
        }
    }
}

/// A query parameter's raw value.
pub fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pick_formats() {
        let cases = [
            ("/v1/chat/completions", Format::OpenAi),
            ("/v1/models", Format::OpenAi),
            ("/healthz", Format::OpenAi),
            ("/v1/messages", Format::Anthropic),
            ("/v1/messages/count_tokens", Format::Anthropic),
            ("/v1beta/models", Format::Gemini),
            (
                "/v1beta/models/g:streamGenerateContent?alt=sse",
                Format::Gemini,
            ),
            ("/v1/models/g:generateContent", Format::Gemini),
            (
                "/openai/deployments/d/chat/completions?api-version=1",
                Format::Azure,
            ),
        ];
        for (path, f) in cases {
            assert_eq!(Format::of_path(path), f, "{path}");
        }
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("/p?a=1&key=k2", "key"), Some("k2"));
        assert_eq!(query_param("/p?alt", "alt"), Some(""));
        assert_eq!(query_param("/p", "key"), None);
    }
}
