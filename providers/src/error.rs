//! Errors: what a codec could not read or write, and a provider's error
//! as one vocabulary, rendered in whatever format the client speaks.

/// A body or event that does not match its wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Client input that is not valid for its format: a 400.
    #[error("{0}")]
    Invalid(String),
    /// The request needs something the target format cannot express.
    #[error("{0}")]
    Unsupported(String),
    /// An upstream body that is not what its format promises: a 502.
    #[error("malformed upstream {format} {what}: {detail}")]
    Upstream {
        format: &'static str,
        what: &'static str,
        detail: String,
    },
}

impl CodecError {
    pub fn invalid(msg: impl Into<String>) -> CodecError {
        CodecError::Invalid(msg.into())
    }
}

/// What kind of failure, independent of who reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    Overloaded,
    Timeout,
    Server,
}

impl ErrorKind {
    /// The kind a bare status implies.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            401 => ErrorKind::Authentication,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Server,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
    /// The format's own code or type (`context_length_exceeded`,
    /// `overloaded_error`, `RESOURCE_EXHAUSTED`…), kept for same-format clients.
    pub code: Option<String>,
}

impl ProviderError {
    pub fn new(status: u16, message: impl Into<String>) -> ProviderError {
        ProviderError {
            status,
            kind: ErrorKind::from_status(status),
            message: message.into(),
            code: None,
        }
    }

    pub fn with_code(mut self, code: impl Into<String>) -> ProviderError {
        self.code = Some(code.into());
        self
    }
}

/// The message of an error body that no format recognised: its text, bounded.
pub fn fallback_message(status: u16, body: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let text = text.trim();
    if text.is_empty() {
        format!("upstream answered {status} with an empty body")
    } else {
        format!("upstream answered {status}: {text}")
    }
}
