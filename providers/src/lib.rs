//! Wire formats of LLM APIs and translation between them through one
//! canonical model. No I/O, no clock, no randomness: ids and timestamps come
//! from the caller, so output is deterministic.

pub mod anthropic;
pub mod canonical;
pub mod codec;
pub mod error;
pub mod format;
pub mod gemini;
mod json;
pub mod json_scan;
pub mod json_write;
pub mod look;
pub mod openai;
pub mod sse;
pub mod translate;

pub use canonical::*;
pub use codec::{
    Codec, EncodeOptions, Encoded, Operation, ResponseMeta, StreamDecoder, StreamEncoder,
};
pub use error::{CodecError, ErrorKind, ProviderError};
pub use format::Format;
pub use look::TextRequest;
pub use sse::{SseEvent, SseParser};
pub use translate::{EventHook, NoHook, StreamTranslator};
