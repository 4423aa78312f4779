//! One typed pass over the common shape of a chat request: messages go
//! straight from the bytes into canonical messages, other top-level keys
//! into a small JSON map. Anything unusual fails here and the caller falls
//! back to the field-by-field decoder, whose errors name the bad field; so
//! this path only has to agree with it where it succeeds.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::canonical::{Image, Message, Part, Role, ToolCall};
use crate::json::Obj;

/// The request with its messages decoded and every other key kept as JSON.
pub struct Top {
    pub messages: Option<Vec<Message>>,
    pub rest: Obj,
}

pub fn top(body: &[u8]) -> Option<Top> {
    serde_json::from_slice(body).ok()
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Top, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
                let mut top = Top {
                    messages: None,
                    rest: Obj::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "messages" {
                        let ms: Vec<Fast> = map.next_value()?;
                        top.messages = Some(ms.into_iter().map(|m| m.0).collect());
                    } else {
                        let v: Value = map.next_value()?;
                        top.rest.insert(key, v);
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Deserialize)]
struct WireMessage {
    role: WireRole,
    #[serde(default)]
    content: Content,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireCall>>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct WireCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WirePart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    image_url: Option<Value>,
}

struct Fast(Message);

impl<'de> Deserialize<'de> for Fast {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fast, D::Error> {
        let w = WireMessage::deserialize(d)?;
        let role = match w.role {
            WireRole::System => Role::System,
            WireRole::Developer => Role::Developer,
            WireRole::User => Role::User,
            WireRole::Assistant => Role::Assistant,
            WireRole::Tool | WireRole::Function => Role::Tool,
        };
        let mut msg = Message::new(role, w.content.0);
        msg.name = w.name;
        msg.tool_call_id = w.tool_call_id;
        if role == Role::Tool && msg.tool_call_id.is_none() {
            msg.tool_call_id = msg.name.clone();
        }
        for c in w.tool_calls.into_iter().flatten() {
            msg.tool_calls.push(ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments.unwrap_or_default(),
            });
        }
        if let Some(r) = w.refusal {
            msg.content.push(Part::Text(r));
        }
        Ok(Fast(msg))
    }
}

#[derive(Default)]
struct Content(Vec<Part>);

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Content, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
                Ok(Content(Vec::new()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content(vec![Part::Text(s.to_string())]))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Content, E> {
                Ok(Content(vec![Part::Text(s)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<WirePart>()? {
                    parts.push(part(p).ok_or_else(|| de::Error::custom("unusual part"))?);
                }
                Ok(Content(parts))
            }
        }
        d.deserialize_any(V)
    }
}

fn part(p: WirePart) -> Option<Part> {
    match p.kind.as_str() {
        "text" | "refusal" => Some(Part::Text(p.text.or(p.refusal).unwrap_or_default())),
        "image_url" => match p.image_url? {
            Value::String(url) => Some(Part::Image(Image::from_url(&url, None))),
            Value::Object(o) => {
                let url = o.get("url")?.as_str()?;
                let detail = match o.get("detail") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(d)) => Some(d.clone()),
                    Some(_) => return None,
                };
                Some(Part::Image(Image::from_url(url, detail)))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::request::{decode_fields, finish};
    use super::*;

    fn text() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!("plain")),
            Just(json!("esc\"aped\n é")),
            Just(json!(null)),
            Just(json!(7)),
        ]
    }

    fn part() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(|t| json!({"type": "text", "text": t})),
            text().prop_map(|t| json!({"type": "refusal", "refusal": t})),
            Just(json!({"type": "image_url", "image_url": "https://x/a.png"})),
            Just(
                json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}})
            ),
            Just(json!({"type": "image_url", "image_url": {"url": "https://x", "detail": 3}})),
            Just(json!({"type": "image_url", "image_url": {"detail": "high"}})),
            Just(json!({"type": "input_audio", "input_audio": {}})),
            Just(json!({"text": "no type"})),
            Just(json!("not an object")),
        ]
    }

    fn message() -> impl Strategy<Value = Value> {
        let role = prop::sample::select(vec![
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
            "function",
            "bogus",
        ]);
        let content = prop_oneof![
            text(),
            prop::collection::vec(part(), 0..3).prop_map(Value::Array),
        ];
        let call = prop_oneof![
            Just(
                json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}})
            ),
            Just(json!({"id": "c2", "function": {"name": "g"}})),
            Just(json!({"id": "c3", "function": {"name": "g", "arguments": null}})),
            Just(json!({"id": 4, "function": {"name": "g"}})),
            Just(json!({"id": "c5"})),
        ];
        let opt = |v: BoxedStrategy<Value>| prop::option::of(v);
        (
            prop::option::of(role),
            prop::option::of(content),
            opt(text().boxed()),
            opt(text().boxed()),
            opt(prop::collection::vec(call, 0..3)
                .prop_map(Value::Array)
                .boxed()),
            opt(text().boxed()),
            any::<bool>(),
        )
            .prop_map(|(role, content, name, call_id, calls, refusal, unknown)| {
                let mut m = Obj::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                };
                put("role", role.map(|r| json!(r)));
                put("content", content);
                put("name", name);
                put("tool_call_id", call_id);
                put("tool_calls", calls);
                put("refusal", refusal);
                put("audio", unknown.then(|| json!({"id": 1})));
                Value::Object(m)
            })
    }

    #[test]
    fn common_shapes_take_the_typed_pass() {
        let body = json!({"model": "m", "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "https://x"}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "r"}
        ], "stream": true});
        let t = top(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(t.messages.unwrap().len(), 4);
        assert!(!t.rest.contains_key("messages"));
    }

    proptest! {
        /// Wherever the typed pass succeeds it agrees with the reference decoder.
        #[test]
        fn agrees_with_the_field_decoder(
            messages in prop::collection::vec(message(), 0..4),
            model in prop_oneof![Just(json!("gpt-4o")), Just(json!(1)), Just(json!(null))],
            temperature in prop_oneof![Just(json!(0.5)), Just(json!("hot"))],
            shape in 0..3u8,
        ) {
            let mut o = json!({"model": model, "temperature": temperature, "stream": true, "x-extra": [1]});
            match shape {
                0 => { o["messages"] = Value::Array(messages); }
                1 => { o["messages"] = Value::Null; }
                _ => {}
            }
            let body = serde_json::to_vec(&o).unwrap();
            let reference = format!("{:?}", decode_fields(&body));
            if let Some(Top { messages: Some(ms), rest }) = top(&body) {
                prop_assert_eq!(format!("{:?}", finish(rest, ms)), reference.clone());
            }
            prop_assert_eq!(format!("{:?}", crate::openai::request::decode(&body)), reference);
        }
    }
}
