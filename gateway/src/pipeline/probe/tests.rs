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
