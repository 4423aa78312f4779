//! Finding one top-level member of a JSON object without parsing the rest:
//! a byte scan that tracks only nesting depth and strings, several times
//! cheaper than even a skipping parse. Used for usage on the hot path.

/// Where the value of the top-level member `key` starts, if the text is an
/// object that has one. The scan does not validate the JSON; a caller
/// parses the value it points at and falls back to a full parse on failure.
pub fn top_level_value(body: &[u8], key: &str) -> Option<usize> {
    let key = key.as_bytes();
    let mut depth = 0u32;
    let mut i = 0;
    let n = body.len();
    while i < n {
        match body[i] {
            b'"' => {
                let start = i + 1;
                i = start;
                // To the closing quote, skipping escaped characters; string
                // bodies are most of a response, so this part is SIMD.
                loop {
                    match memchr::memchr2(b'"', b'\\', &body[i.min(n)..]) {
                        Some(k) if body[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k;
                            break;
                        }
                        None => return None,
                    }
                }
                if depth == 1 && body.get(start..i) == Some(key) {
                    let mut j = i + 1;
                    while j < n && body[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if body.get(j) == Some(&b':') {
                        j += 1;
                        while j < n && body[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        return Some(j);
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
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

    proptest! {
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
