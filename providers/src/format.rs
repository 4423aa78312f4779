//! The one place that matches on the wire format.

use crate::codec::Codec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Format {
    pub fn codec(self) -> &'static dyn Codec {
        match self {
            Format::OpenAi => &crate::openai::OpenAi,
            Format::Anthropic => &crate::anthropic::Anthropic,
            Format::Gemini => &crate::gemini::Gemini,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenAi => "openai",
            Format::Anthropic => "anthropic",
            Format::Gemini => "gemini",
        }
    }
}
