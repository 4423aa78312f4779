//! The probe's pass over `messages`: each must be an object with a string
//! `role`. When filters will look at the request, the same pass also reads
//! its texts, borrowed from the body, for an OpenAI request whose messages
//! hold text alone; anything else (tool calls, images, a role it does not
//! know) leaves the texts unread and the request is decoded as before. It
//! never refuses more than the plain probe does: errors stay the probe's.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use sluice_providers::{Role, TextRequest};

/// Visitor methods for booleans and numbers, all answering `$v`.
macro_rules! scalars {
    ($v:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($v)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($v)
        }
    };
}

/// What the probe keeps of `messages`.
pub trait Messages<'a>: Deserialize<'a> {
    fn count(&self) -> usize;
    fn texts(self) -> Option<TextRequest<'a>>;
}

/// The count alone.
pub struct Count(usize);

/// The count and, when every message holds text alone, the texts.
pub struct Texts<'a>(usize, Option<Vec<(usize, Role, Cow<'a, str>)>>);

impl<'a> Messages<'a> for Count {
    fn count(&self) -> usize {
        self.0
    }
    fn texts(self) -> Option<TextRequest<'a>> {
        None
    }
}

impl<'a> Messages<'a> for Texts<'a> {
    fn count(&self) -> usize {
        self.0
    }
    fn texts(self) -> Option<TextRequest<'a>> {
        let parts = self.1?;
        Some(TextRequest {
            messages: self.0,
            parts,
        })
    }
}

type Parts<'a> = Option<Vec<(usize, Role, Cow<'a, str>)>>;

/// Walks the array; `parts` is `None` when texts are not read (or no longer).
fn walk<'de, A: SeqAccess<'de>>(mut seq: A, mut parts: Parts<'de>) -> Result<Texts<'de>, A::Error> {
    let mut n = 0;
    while seq
        .next_element_seed(Message {
            index: n,
            parts: &mut parts,
        })?
        .is_some()
    {
        n += 1;
    }
    Ok(Texts(n, parts))
}

struct Array(bool);

impl<'de> Visitor<'de> for Array {
    type Value = Texts<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("'messages' to be an array of message objects")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        walk(seq, self.0.then(Vec::new))
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        Ok(Count(d.deserialize_seq(Array(false))?.0))
    }
}

impl<'de> Deserialize<'de> for Texts<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Texts<'de>, D::Error> {
        d.deserialize_seq(Array(true))
    }
}

/// One message; its texts go to `parts` while that is `Some`.
struct Message<'p, 'de> {
    index: usize,
    parts: &'p mut Parts<'de>,
}

impl<'de> DeserializeSeed<'de> for Message<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Message<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("each item of 'messages' to be an object with a 'role'")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let reading = self.parts.is_some();
        let mut role = None;
        let mut content = Vec::new();
        let mut plain = true;
        let mut seen_content = false;
        // Keys and roles borrowed: `Cow<str>` would make each a `String`.
        while let Some(key) = map.next_key::<Loose<'de>>()? {
            match key.str().as_deref().unwrap_or_default() {
                "role" => {
                    let Loose::Str(r) = map.next_value::<Loose<'de>>()? else {
                        return Err(de::Error::custom("'role' of a message must be a string"));
                    };
                    // The decoder refuses a second one: decoded, it answers.
                    plain &= role.replace(r).is_none();
                }
                "content" if reading => {
                    let text = map.next_value_seed(Content(&mut content))?;
                    plain &= text && !seen_content;
                    seen_content = true;
                }
                // A name changes nothing the filters read; the decoder
                // refuses one that is not a string.
                "name" if reading => {
                    let name = map.next_value::<Option<Loose<'de>>>()?;
                    plain &= matches!(name, None | Some(Loose::Str(_)));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    plain = false;
                }
            }
        }
        let Some(role) = role else {
            return Err(de::Error::custom("every message needs a 'role'"));
        };
        if let Some(parts) = self.parts.as_mut() {
            let role = match &*role {
                "system" => Some(Role::System),
                "developer" => Some(Role::Developer),
                "user" => Some(Role::User),
                "assistant" => Some(Role::Assistant),
                // Tool turns carry call ids the texts leave out.
                _ => None,
            };
            match role.filter(|_| plain) {
                Some(role) => parts.extend(content.into_iter().map(|t| (self.index, role, t))),
                None => *self.parts = None,
            }
        }
        Ok(())
    }
}

/// A message's `content`: a string, null, or text parts. Any other value is
/// read through and answers `false` (not text alone).
struct Content<'p, 'de>(&'p mut Vec<Cow<'de, str>>);

impl<'de> DeserializeSeed<'de> for Content<'_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Content<'_, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<bool, E> {
        self.0.push(Cow::Borrowed(s));
        Ok(true)
    }
    fn visit_str<E>(self, s: &str) -> Result<bool, E> {
        self.0.push(Cow::Owned(s.to_string()));
        Ok(true)
    }
    fn visit_string<E>(self, s: String) -> Result<bool, E> {
        self.0.push(Cow::Owned(s));
        Ok(true)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut plain = true;
        while let Some(part) = seq.next_element::<Loose<'de>>()? {
            match part {
                Loose::Part(Some(t)) if plain => self.0.push(t),
                _ => plain = false,
            }
        }
        Ok(plain)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        drain_map(map)?;
        Ok(false)
    }
    scalars!(false);
}

/// Any JSON value, read through: a string is kept (borrowed when it has no
/// escapes), and an object that is `{"type": "text", "text": "…"}` and
/// nothing else gives its text.
enum Loose<'de> {
    Str(Cow<'de, str>),
    /// An object, and its text when it is a text part.
    Part(Option<Cow<'de, str>>),
    Other,
}

impl<'de> Loose<'de> {
    fn str(self) -> Option<Cow<'de, str>> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Loose::Str(Cow::Owned(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut kind, mut text, mut plain) = (None, None, true);
                while let Some(key) = map.next_key::<Loose<'de>>()? {
                    let value = map.next_value::<Loose<'de>>()?.str();
                    match key.str().as_deref().unwrap_or_default() {
                        "type" if kind.is_none() => kind = value,
                        "text" if text.is_none() => text = value,
                        _ => plain = false,
                    }
                }
                let text = text.filter(|_| plain && kind.as_deref() == Some("text"));
                Ok(Loose::Part(text))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Loose::Other)
            }
            scalars!(Loose::Other);
        }
        d.deserialize_any(V)
    }
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}
