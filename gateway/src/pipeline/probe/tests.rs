use super::*;

fn chat(body: &str) -> Result<Probe<'_>, GatewayError> {
    probe(Endpoint::ChatCompletions, body.as_bytes())
}

#[test]
fn finds_model_and_span() {
    let body =
        r#"{"messages":[{"role":"user","content":"hi"}], "model" : "gpt\u002d4o","stream":true}"#;
    let p = chat(body).unwrap();
    assert_eq!(p.model, "gpt-4o");
    assert_eq!(&body[p.model_span.clone()], r#""gpt\u002d4o""#);
    assert!(p.stream);
    let swapped = swap_model(&Bytes::from(body.to_string()), p.model_span, br#""up""#);
    assert_eq!(
        std::str::from_utf8(&swapped).unwrap(),
        r#"{"messages":[{"role":"user","content":"hi"}], "model" : "up","stream":true}"#
    );
}

#[test]
fn nested_model_keys_are_not_confused() {
    let body = r#"{"messages":[{"role":"user","content":"x","model":"inner"}],"model":"outer"}"#;
    let p = chat(body).unwrap();
    assert_eq!(p.model, "outer");
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("", "empty"),
        ("{", "Invalid JSON"),
        ("[]", "Invalid JSON"),
        (r#"{"messages":[{"role":"user"}]}"#, "model"),
        (
            r#"{"model":3,"messages":[{"role":"user"}]}"#,
            "'model' must be a string",
        ),
        (r#"{"model":"m"}"#, "'messages'"),
        (r#"{"model":"m","messages":"hi"}"#, "'messages'"),
        (r#"{"model":"m","messages":[]}"#, "at least one"),
        (r#"{"model":"m","messages":[{"content":"x"}]}"#, "'role'"),
        (r#"{"model":"m","messages":[{"role":1}]}"#, "'role'"),
        (
            r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
            "'stream' must be a boolean",
        ),
    ];
    for (body, needle) in cases {
        let e = chat(body)
            .err()
            .unwrap_or_else(|| panic!("{body} should fail"));
        assert_eq!(e.status(), 400, "{body}");
        assert!(e.to_string().contains(needle), "{body}: {e}");
    }
}

#[test]
fn per_endpoint_required_fields() {
    assert!(probe(Endpoint::Embeddings, br#"{"model":"e"}"#).is_err());
    assert!(probe(Endpoint::Embeddings, br#"{"model":"e","input":"x"}"#).is_ok());
    assert!(probe(
        Endpoint::Embeddings,
        br#"{"model":"e","input":"x","stream":true}"#
    )
    .is_err());
    assert!(probe(
        Endpoint::Completions,
        br#"{"model":"c","prompt":"x","stream":true}"#
    )
    .is_ok());
}

#[test]
fn unchanged_model_shares_the_buffer() {
    let body = Bytes::from_static(br#"{"model":"same","input":"x"}"#);
    let p = probe(Endpoint::Embeddings, &body).unwrap();
    let out = swap_model(&body, p.model_span, br#""same""#);
    assert_eq!(out.as_ptr(), body.as_ptr());
}

/// Where the decode comes first, its probe is the probe's, or it steps
/// aside (`None`) so the probe answers.
#[test]
fn a_probe_from_the_decoded_request_agrees_or_steps_aside() {
    let cases = [
        (
            Endpoint::ChatCompletions,
            r#"{"messages":[{"role":"user","content":"a \"model\": b"}], "model" : "gpt-4o","stream":true,"n":3,"max_completion_tokens":9,"max_tokens":4}"#,
            true,
        ),
        (
            Endpoint::ChatCompletions,
            r#"{"model":"m","messages":[{"role":"user","content":"x","model":"inner"}],"metadata":{"model":"x"}}"#,
            true,
        ),
        (
            Endpoint::Messages,
            r#"{"model":"claude","max_tokens":7,"messages":[{"role":"user","content":"x"}]}"#,
            true,
        ),
        // Anthropic has no `n`: the decoder keeps it aside, the probe counts it.
        (
            Endpoint::Messages,
            r#"{"model":"claude","max_tokens":7,"n":2,"messages":[{"role":"user","content":"x"}]}"#,
            false,
        ),
        (
            Endpoint::ChatCompletions,
            r#"{"model":"gpt\u002d4o","messages":[{"role":"user","content":"x"}]}"#,
            false,
        ),
        // A second model, plain or escaped: the decoder keeps the last, the probe refuses.
        (
            Endpoint::ChatCompletions,
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],"model":"b"}"#,
            false,
        ),
        (
            Endpoint::ChatCompletions,
            r#"{"model":"a","messages":[{"role":"user","content":"x"}],"mod\u0065l":"b"}"#,
            false,
        ),
        (
            Endpoint::ChatCompletions,
            r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
            false,
        ),
        (
            Endpoint::ChatCompletions,
            r#"{"model":"m","messages":[]}"#,
            false,
        ),
    ];
    for (endpoint, body, stands) in cases {
        let decoded = endpoint.format().codec().decode_request(body.as_bytes());
        let fast = decoded.ok().and_then(|r| from_decoded(body.as_bytes(), &r));
        assert_eq!(fast.is_some(), stands, "{body}");
        let Some(fast) = fast else { continue };
        let slow = probe(endpoint, body.as_bytes()).unwrap();
        assert_eq!(fast.model, slow.model, "{body}");
        assert_eq!(fast.model_span, slow.model_span, "{body}");
        assert_eq!(
            (fast.stream, fast.max_tokens, fast.choices),
            (slow.stream, slow.max_tokens, slow.choices),
            "{body}"
        );
    }
}

fn texts(body: &str) -> Option<Vec<(usize, sluice_providers::Role, String)>> {
    let p = probe_texts(Endpoint::ChatCompletions, body.as_bytes()).expect(body);
    let t = p.texts?;
    Some(
        t.text_parts()
            .map(|(i, r, s)| (i, r, s.to_string()))
            .collect(),
    )
}

#[test]
fn texts_are_read_only_from_messages_of_text_alone() {
    use sluice_providers::Role::*;
    let t = texts(
        r#"{"model":"m","messages":[{"role":"system","content":"be \"brief\""},
        {"role":"user","name":"ann","content":[{"type":"text","text":"a"},{"text":"b","type":"text"}]},
        {"role":"assistant","content":null},{"role":"developer"}],"temperature":1}"#,
    )
    .unwrap();
    assert_eq!(
        t,
        [
            (0, System, "be \"brief\"".into()),
            (1, User, "a".into()),
            (1, User, "b".into())
        ]
    );
    let unusual = [
        r#"{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x"}}]}"#,
        r#"{"role":"user","content":[{"type":"text","text":"a","cache_control":{}}]}"#,
        r#"{"role":"user","content":[{"type":"text"}]}"#,
        r#"{"role":"user","content":[{"type":"text","text":1}]}"#,
        r#"{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}"#,
        r#"{"role":"user","content":["a"]}"#,
        r#"{"role":"user","content":{"text":"a"}}"#,
        r#"{"role":"user","content":7}"#,
        r#"{"role":"user","content":"a","content":"b"}"#,
        r#"{"role":"user","role":"user","content":"a"}"#,
        r#"{"role":"user","name":3,"content":"a"}"#,
        r#"{"role":"assistant","content":null,"tool_calls":[]}"#,
        r#"{"role":"assistant","refusal":"no"}"#,
        r#"{"role":"tool","tool_call_id":"c","content":"r"}"#,
        r#"{"role":"bogus","content":"a"}"#,
    ];
    for m in unusual {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}},{m}]}}"#);
        assert_eq!(texts(&body), None, "{m}");
    }
    // Declared tools are counted and limited by filters: decoded.
    assert_eq!(
        texts(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[]}"#),
        None
    );
    // Other endpoints and non-UTF-8 bodies are probed as before, without texts.
    let p = probe_texts(
        Endpoint::Messages,
        br#"{"model":"c","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
    )
    .unwrap();
    assert!(p.texts.is_none());
    let p = probe_texts(
        Endpoint::ChatCompletions,
        b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
    )
    .unwrap();
    assert!(p.texts.is_none());
}

mod agreement {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn text() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!("plain")),
            Just(json!("esc\"aped\n é")),
            Just(json!(null)),
            Just(json!(7)),
            Just(json!({"x": [1]})),
        ]
    }

    fn part() -> impl Strategy<Value = Value> {
        prop_oneof![
            text().prop_map(|t| json!({"type": "text", "text": t})),
            Just(json!({"type": "text", "text": "a", "extra": 1})),
            Just(json!({"type": "refusal", "refusal": "no"})),
            Just(json!({"type": "image_url", "image_url": "https://x/a.png"})),
            Just(json!({"text": "no type"})),
            Just(json!("not an object")),
        ]
    }

    fn message() -> impl Strategy<Value = Value> {
        let role = prop::sample::select(vec![
            json!("system"),
            json!("developer"),
            json!("user"),
            json!("assistant"),
            json!("tool"),
            json!("bogus"),
            json!(1),
        ]);
        let content = prop_oneof![
            text(),
            prop::collection::vec(part(), 0..3).prop_map(Value::Array),
        ];
        (
            prop::option::of(role),
            prop::option::of(content),
            prop::option::of(text()),
            any::<bool>(),
        )
            .prop_map(|(role, content, name, call)| {
                let mut m = serde_json::Map::new();
                if let Some(r) = role {
                    m.insert("role".into(), r);
                }
                if let Some(c) = content {
                    m.insert("content".into(), c);
                }
                if let Some(n) = name {
                    m.insert("name".into(), n);
                }
                if call {
                    m.insert(
                        "tool_calls".into(),
                        json!([{"id": "c", "function": {"name": "f", "arguments": "{}"}}]),
                    );
                }
                Value::Object(m)
            })
    }

    proptest! {
        /// Reading texts never changes the probe's answer or error; texts
        /// are read only where the decoder succeeds, and they are the
        /// decoded request's text parts.
        #[test]
        fn texts_agree_with_the_probe_and_the_decoder(
            messages in prop::collection::vec(message(), 0..4),
            stream in any::<bool>(),
            tools in any::<bool>(),
        ) {
            let mut o = json!({"model": "m", "messages": messages, "stream": stream});
            if tools {
                o["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
            }
            let body = serde_json::to_vec(&o).unwrap();
            let plain = probe(Endpoint::ChatCompletions, &body);
            let with = probe_texts(Endpoint::ChatCompletions, &body);
            match (&plain, &with) {
                (Ok(a), Ok(b)) => prop_assert_eq!(
                    (&a.model, &a.model_span, a.stream, a.choices),
                    (&b.model, &b.model_span, b.stream, b.choices)
                ),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                _ => prop_assert!(false, "{:?} / {:?}", plain.is_ok(), with.is_ok()),
            }
            if let Some(texts) = with.ok().and_then(|p| p.texts) {
                let req = sluice_providers::Format::OpenAi
                    .codec()
                    .decode_request(&body)
                    .expect("texts read from a request the decoder refuses");
                prop_assert_eq!(texts.messages, req.messages.len());
                prop_assert!(req.tools.is_empty());
                prop_assert!(req.messages.iter().all(|m| m.tool_calls.is_empty()));
                let decoded: Vec<_> = req.text_parts().collect();
                let read: Vec<_> = texts.text_parts().collect();
                prop_assert_eq!(read, decoded);
            }
        }
    }
}
