//! Text-only requests (no tools, images or tool turns: most chats) written
//! straight to bytes. The general encoder builds a `serde_json::Value`
//! tree, copying every text into it and every key into a map, and then
//! serializes the tree; this writes the same bytes, keys in the same sorted
//! order, from the canonical request. A property test holds the two equal.

use std::io::Write;

use super::request::{push_turn, user_first};
use crate::canonical::*;
use crate::codec::EncodeOptions;
use crate::json_write::{write_array, write_str};

/// The request body, or `None` when the request holds anything but text
/// (the general encoder takes those).
pub fn encode(req: &ChatRequest, opts: &EncodeOptions<'_>) -> Option<Vec<u8>> {
    let same = req.origin == crate::format::Format::Anthropic;
    if !req.tools.is_empty() || req.tool_choice.is_some() || (same && !req.extra.is_empty()) {
        return None;
    }
    let mut system: Vec<String> = Vec::new();
    // (role, texts)
    let mut turns: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for m in &req.messages {
        let role = match m.role {
            Role::System | Role::Developer => {
                system.push(m.joined_text());
                continue;
            }
            Role::User => "user",
            Role::Assistant if m.tool_calls.is_empty() => "assistant",
            Role::Assistant | Role::Tool => return None,
        };
        let mut texts = Vec::with_capacity(m.content.len());
        for p in &m.content {
            match p {
                Part::Text(t) if t.is_empty() => {}
                Part::Text(t) => texts.push(t.as_str()),
                Part::Image(_) => return None,
            }
        }
        push_turn(&mut turns, role, texts);
    }
    user_first(&mut turns, "...");
    let size = 256
        + turns
            .iter()
            .flat_map(|t| &t.1)
            .map(|s| s.len() + 32)
            .sum::<usize>();
    let mut out = Vec::with_capacity(size + system.iter().map(String::len).sum::<usize>());
    out.extend_from_slice(b"{\"max_tokens\":");
    number(&mut out, &req.max_tokens.unwrap_or(opts.default_max_tokens));
    out.extend_from_slice(b",\"messages\":");
    write_array(&mut out, &turns, |out, (role, texts)| {
        out.extend_from_slice(b"{\"content\":");
        write_array(out, texts, |out, t| {
            out.extend_from_slice(b"{\"text\":");
            write_str(out, t);
            out.extend_from_slice(b",\"type\":\"text\"}");
        });
        out.extend_from_slice(b",\"role\":");
        write_str(out, role);
        out.push(b'}');
    });
    if let Some(u) = &req.user {
        out.extend_from_slice(b",\"metadata\":{\"user_id\":");
        write_str(&mut out, u);
        out.push(b'}');
    }
    out.extend_from_slice(b",\"model\":");
    write_str(&mut out, opts.model);
    if !req.stop.is_empty() {
        out.extend_from_slice(b",\"stop_sequences\":");
        write_array(&mut out, &req.stop, |out, s| write_str(out, s));
    }
    if req.stream {
        out.extend_from_slice(b",\"stream\":true");
    }
    if !system.is_empty() {
        out.extend_from_slice(b",\"system\":");
        write_str(&mut out, &system.join("\n\n"));
    }
    if let Some(t) = req.temperature {
        out.extend_from_slice(b",\"temperature\":");
        number(&mut out, &t);
    }
    if let Some(k) = req.top_k {
        out.extend_from_slice(b",\"top_k\":");
        number(&mut out, &k);
    }
    if let Some(p) = req.top_p {
        out.extend_from_slice(b",\"top_p\":");
        number(&mut out, &p);
    }
    out.push(b'}');
    Some(out)
}

/// A number as serde_json writes it (`null` for a float that is not finite).
fn number(out: &mut Vec<u8>, n: &impl serde::Serialize) {
    let _ = serde_json::to_writer(out.by_ref(), n);
}

#[cfg(test)]
mod tests {
    use super::super::request::encode_general;
    use super::*;
    use crate::format::Format;
    use proptest::prelude::*;

    fn opts() -> EncodeOptions<'static> {
        EncodeOptions {
            model: "claude-sonnet-4-5",
            default_max_tokens: 4096,
            stream_usage: false,
        }
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            any::<String>(),
            "[a-z \"\\\\\n\t]{1,40}"
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        let role = prop_oneof![
            Just(Role::System),
            Just(Role::Developer),
            Just(Role::User),
            Just(Role::Assistant)
        ];
        (role, proptest::collection::vec(text(), 0..3)).prop_map(|(role, texts)| {
            Message::new(role, texts.into_iter().map(Part::Text).collect())
        })
    }

    prop_compose! {
        fn request()(
            anthropic in any::<bool>(),
            messages in proptest::collection::vec(message(), 0..6),
            max_tokens in proptest::option::of(any::<u32>()),
            temperature in proptest::option::of(prop_oneof![any::<f64>(), Just(0.7), Just(1.0)]),
            top_p in proptest::option::of(0.0f64..1.0),
            top_k in proptest::option::of(any::<u32>()),
            stop in proptest::collection::vec(text(), 0..3),
            stream in any::<bool>(),
            user in proptest::option::of(text()),
            n in proptest::option::of(0u32..4),
            seed in proptest::option::of(any::<i64>()),
            extra in proptest::option::of("[a-z_]{1,8}"),
        ) -> ChatRequest {
            let origin = if anthropic { Format::Anthropic } else { Format::OpenAi };
            let mut r = ChatRequest::new(origin, "m");
            r.messages = messages;
            r.max_tokens = max_tokens;
            r.temperature = temperature;
            r.top_p = top_p;
            r.top_k = top_k;
            r.stop = stop;
            r.stream = stream;
            r.user = user;
            r.n = n;
            r.seed = seed;
            if let Some(k) = extra {
                r.extra.insert(k, serde_json::json!(1));
            }
            r
        }
    }

    proptest! {
        #[test]
        fn text_requests_are_written_as_the_general_encoder_writes_them(req in request()) {
            let general = encode_general(&req, &opts()).unwrap();
            match encode(&req, &opts()) {
                Some(body) => prop_assert_eq!(
                    String::from_utf8(body).unwrap(),
                    String::from_utf8(general.body).unwrap()
                ),
                // Only an Anthropic request's own extra fields leave the text path.
                None => prop_assert!(req.origin == Format::Anthropic && !req.extra.is_empty()),
            }
        }
    }

    #[test]
    fn anything_but_text_goes_to_the_general_encoder() {
        let mut r = ChatRequest::new(Format::OpenAi, "m");
        r.messages
            .push(Message::new(Role::User, vec![Part::Text("hi".into())]));
        assert!(encode(&r, &opts()).is_some());
        let mut tool = Message::new(Role::Tool, vec![Part::Text("42".into())]);
        tool.tool_call_id = Some("c1".into());
        r.messages.push(tool);
        assert!(encode(&r, &opts()).is_none());
        r.messages.pop();
        r.tool_choice = Some(ToolChoice::Auto);
        assert!(encode(&r, &opts()).is_none());
    }
}
