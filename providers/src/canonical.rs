//! The canonical vocabulary every wire format decodes into and encodes from.
//! Field names follow OpenAI's where a choice had to be made.

use serde_json::{Map, Value};

use crate::error::ProviderError;
use crate::format::Format;

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// System and developer prompts stay in place as messages; formats that
    /// hold them apart (Anthropic, Gemini) lift them out when encoding.
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub n: Option<u32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub user: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub stream: bool,
    /// The client asked for a usage report at the end of a stream.
    pub include_usage: bool,
    /// The wire format this request was decoded from.
    pub origin: Format,
    /// Fields of the origin format with no canonical home; re-emitted only
    /// when encoding back to the same format.
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    pub fn new(origin: Format, model: impl Into<String>) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages: Vec::new(),
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: None,
            temperature: None,
            top_p: None,
            top_k: None,
            max_tokens: None,
            stop: Vec::new(),
            n: None,
            seed: None,
            presence_penalty: None,
            frequency_penalty: None,
            user: None,
            metadata: None,
            stream: false,
            include_usage: false,
            origin,
            extra: Map::new(),
        }
    }

    /// Every piece of text a person or tool put into the prompt, in order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().flat_map(|m| {
            m.content
                .iter()
                .filter_map(|p| match p {
                    Part::Text(t) => Some(t.as_str()),
                    Part::Image(_) => None,
                })
                .chain(m.tool_calls.iter().map(|c| c.arguments.as_str()))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
    pub name: Option<String>,
    /// Assistant turns: the tools it called.
    pub tool_calls: Vec<ToolCall>,
    /// Tool turns: which call this answers.
    pub tool_call_id: Option<String>,
    /// Tool turns: the result reports a failure (Anthropic's `is_error`).
    pub is_error: bool,
}

impl Message {
    pub fn new(role: Role, content: Vec<Part>) -> Message {
        Message {
            role,
            content,
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        }
    }

    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message::new(role, vec![Part::Text(text.into())])
    }

    /// The text parts joined, for formats that take a plain string.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for p in &self.content {
            if let Part::Text(t) = p {
                out.push_str(t);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    Url { url: String, detail: Option<String> },
    Base64 { media_type: String, data: String },
}

impl Image {
    /// `data:` URLs become inline base64; anything else stays a URL.
    pub fn from_url(url: &str, detail: Option<String>) -> Image {
        if let Some(rest) = url.strip_prefix("data:") {
            if let Some((meta, data)) = rest.split_once(',') {
                if let Some(media_type) = meta.strip_suffix(";base64") {
                    return Image::Base64 {
                        media_type: media_type.to_string(),
                        data: data.to_string(),
                    };
                }
            }
        }
        Image::Url {
            url: url.to_string(),
            detail,
        }
    }

    pub fn to_url(&self) -> String {
        match self {
            Image::Url { url, .. } => url.clone(),
            Image::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Arguments as JSON text, exactly as the model produced them.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub index: u32,
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<FinishReason>,
    /// The stop sequence that ended generation, when the format says which.
    pub stop_sequence: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of `prompt_tokens`: read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Of `prompt_tokens`: written to the provider's prompt cache.
    pub cache_creation_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// A reason with no common equivalent, in the upstream's words.
    Other(String),
}

/// One vocabulary for every format's stream. Decoders turn upstream events
/// into these; encoders turn these into the client's events.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Start {
        id: String,
        model: String,
        created: u64,
        /// Known up front in some formats (Anthropic's `message_start`).
        prompt_tokens: Option<u64>,
    },
    Text {
        index: u32,
        text: String,
    },
    ToolCallStart {
        index: u32,
        /// Position of this call among the choice's tool calls.
        call: u32,
        id: String,
        name: String,
    },
    ToolCallArgs {
        index: u32,
        call: u32,
        fragment: String,
    },
    Finish {
        index: u32,
        reason: FinishReason,
        stop_sequence: Option<String>,
    },
    Usage(Usage),
    Error(ProviderError),
    /// The upstream said the stream is complete.
    Done,
}

/// Canonical embeddings request: texts in, vectors out.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub model: String,
    pub inputs: Vec<String>,
    pub dimensions: Option<u32>,
    /// The client wants base64-packed little-endian f32 vectors.
    pub base64: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbedResponse {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u64,
}
