//! A chat request seen through its texts alone. Filters that only look at a
//! request (and would not change it) take this instead of a decoded
//! `ChatRequest`, so the gateway can read it off the client's bytes in the
//! pass that validates them and forward those bytes as they are.

use std::borrow::Cow;

use crate::canonical::{ChatRequest, Part, Role};

/// A request whose messages hold text and nothing else: no images, tool
/// calls or tool results, and no tools declared.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TextRequest<'a> {
    /// Messages in the request, with or without text.
    pub messages: usize,
    /// Every text part in order: its message's index and role, and the text.
    pub parts: Vec<(usize, Role, Cow<'a, str>)>,
}

impl TextRequest<'_> {
    /// Each text part with its message's index and role, in order.
    pub fn text_parts(&self) -> impl Iterator<Item = (usize, Role, &str)> + Clone {
        self.parts.iter().map(|(i, role, t)| (*i, *role, &**t))
    }
}

impl ChatRequest {
    /// Each text part with its message's index and role, in order; the
    /// same parts a `TextRequest` of the same request lists.
    pub fn text_parts(&self) -> impl Iterator<Item = (usize, Role, &str)> + Clone {
        self.messages.iter().enumerate().flat_map(|(i, m)| {
            m.content.iter().filter_map(move |p| match p {
                Part::Text(t) => Some((i, m.role, t.as_str())),
                Part::Image(_) => None,
            })
        })
    }
}
