//! Finding one top-level member of a JSON object without parsing the rest:
//! a byte scan that tracks only nesting depth and strings, several times
//! cheaper than even a skipping parse; and, cheaper still, a search from
//! the end for a member that comes last. Used for usage on the hot path.

/// Where the value of member `key` starts, if the last `"key"` in the text
/// is a real key (followed by `:`): the caller parses the value and
/// keeps it only if `closes_object` holds after it. In valid JSON an
/// unescaped quote followed by a letter opens a string, and a string
/// followed by `:` is a key; a key whose value is followed by the close of
/// the text's one object belongs to that object. Upstreams put `usage`
/// last, so this reads the usage object and little else.
pub fn last_member(body: &[u8], key: &str) -> Option<usize> {
    let key = key.as_bytes();
    if body.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    // Quote by quote from the end: the member sits within the last few.
    let open = memchr::memrchr_iter(b'"', body).find(|&q| {
        body.get(q + 1..q + 1 + key.len()) == Some(key)
            && body.get(q + 1 + key.len()) == Some(&b'"')
    })?;
    // The opening quote is escaped after an odd run of backslashes.
    let slashes = body[..open]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    if slashes % 2 == 1 {
        return None;
    }
    let rest = body[open + key.len() + 2..].trim_ascii_start();
    let rest = rest.strip_prefix(b":")?.trim_ascii_start();
    Some(body.len() - rest.len())
}

/// Whether `after` (the text after a member's value) closes the object and
/// ends the text.
pub fn closes_object(after: &[u8]) -> bool {
    after.trim_ascii() == b"}"
}

/// Where the value of the top-level member `key` starts, if the text is an
/// object that has one. The scan does not validate the JSON; a caller
/// parses the value it points at and falls back to a full parse on failure.
pub fn top_level_value(body: &[u8], key: &str) -> Option<usize> {
    let key = key.as_bytes();
    members(body).find(|(k, _)| *k == key).map(|(_, at)| at)
}

/// The members of the text's top-level object, in order: each key as
/// written (escapes not undone) and where its value starts. Like
/// `top_level_value`, it does not validate the JSON.
pub fn members(body: &[u8]) -> Members<'_> {
    Members {
        body,
        i: 0,
        depth: 0,
    }
}

pub struct Members<'a> {
    body: &'a [u8],
    i: usize,
    depth: u32,
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a [u8], usize);

    fn next(&mut self) -> Option<Self::Item> {
        let body = self.body;
        let n = body.len();
        while self.i < n {
            let mut i = self.i;
            match body[i] {
                b'"' => {
                    let start = i + 1;
                    i = start;
                    // To the closing quote, skipping escaped characters;
                    // string bodies are most of the text, so this is SIMD.
                    loop {
                        match memchr::memchr2(b'"', b'\\', &body[i.min(n)..]) {
                            Some(k) if body[i + k] == b'\\' => i += k + 2,
                            Some(k) => {
                                i += k;
                                break;
                            }
                            None => {
                                self.i = n;
                                return None;
                            }
                        }
                    }
                    self.i = i + 1;
                    if self.depth == 1 {
                        let mut j = i + 1;
                        while j < n && body[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        if body.get(j) == Some(&b':') {
                            j += 1;
                            while j < n && body[j].is_ascii_whitespace() {
                                j += 1;
                            }
                            self.i = j;
                            return Some((&body[start..i], j));
                        }
                    }
                    continue;
                }
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
            self.i = i + 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_only_the_top_level_member() {
        let b = br#"{"a":{"usage":1},"s":"\"usage\": 2","usage" : {"x":3}}"#;
        let at = top_level_value(b, "usage").unwrap();
        assert_eq!(&b[at..at + 7], br#"{"x":3}"#);
        assert_eq!(top_level_value(br#"{"a":[{"usage":1}]}"#, "usage"), None);
        assert_eq!(top_level_value(br#"["usage", 1]"#, "usage"), None);
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z\"\\\\{}:,\\[\\] ]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("(usage|u|\"usage\"|x)", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `last_member` with the value parsed and the close checked, as a
    /// caller does.
    fn last(text: &[u8], key: &str) -> Option<serde_json::Value> {
        let at = last_member(text, key)?;
        let mut values =
            serde_json::Deserializer::from_slice(&text[at..]).into_iter::<serde_json::Value>();
        let v = values.next()?.ok()?;
        closes_object(&text[at + values.byte_offset()..]).then_some(v)
    }

    #[test]
    fn finds_the_last_member_only_when_it_closes_the_object() {
        assert_eq!(
            last(br#"{"a":1, "usage" : {"x":3} } "#, "usage"),
            Some(serde_json::json!({"x":3}))
        );
        assert_eq!(last(br#"{"a":{"usage":1}}"#, "usage"), None);
        assert_eq!(last(br#"{"usage":1,"a":2}"#, "usage"), None);
        assert_eq!(last(br#"{"say \"usage": 1}"#, "usage"), None);
        assert_eq!(
            last(br#"{"x":"a\\","usage":2}"#, "usage"),
            Some(serde_json::json!(2))
        );
        assert_eq!(last(br#"["usage", 1]"#, "usage"), None);
    }

    proptest! {
        /// On any object, a member found from the end is the one a parser
        /// finds.
        #[test]
        fn the_last_member_agrees_with_a_parser(members in prop::collection::btree_map(r#"(usage|u|"usage"|x|a\\|\\)"#, json(), 0..5)) {
            let v = serde_json::Value::Object(members.into_iter().collect());
            let text = v.to_string();
            let found = last(text.as_bytes(), "usage");
            // Keys are written sorted: `usage` is last when no greater key
            // is there, and then it is found unless its own value says
            // "usage" (the search stops at the last occurrence).
            let is_last = v.as_object().and_then(|o| o.keys().next_back()).is_some_and(|k| k == "usage");
            if is_last && !v["usage"].to_string().contains("usage") {
                prop_assert!(found.is_some());
            }
            if let Some(found) = found {
                prop_assert_eq!(Some(&found), v.get("usage"));
            }
        }

        /// On any object, the scan finds exactly the value a parser finds.
        #[test]
        fn agrees_with_a_parser(members in prop::collection::btree_map("(usage|u|\"usage\"|x)", json(), 0..5)) {
            let v = serde_json::Value::Object(members.into_iter().collect());
            let text = v.to_string();
            let found = top_level_value(text.as_bytes(), "usage").map(|at| {
                let mut de = serde_json::Deserializer::from_slice(&text.as_bytes()[at..]);
                <serde_json::Value as serde::Deserialize>::deserialize(&mut de).unwrap()
            });
            prop_assert_eq!(found.as_ref(), v.get("usage"));
        }
    }
}
