//! Golden files per codec direction, from the providers' documented
//! examples. `SLUICE_UPDATE_GOLDEN=1 cargo test -p sluice-providers` rewrites
//! the expected files; review the diff before committing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::{json, Value};
use sluice_providers::{EncodeOptions, Format, ResponseMeta, StreamTranslator};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "sluice-test".into(),
        created: 1_700_000_000,
    }
}

fn check(name: &str, got: &str) {
    let path = dir().join(name);
    if std::env::var_os("SLUICE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{name}: {e} (run with SLUICE_UPDATE_GOLDEN=1)"));
    assert_eq!(got, want, "golden {name} differs");
}

fn pretty(bytes: &[u8]) -> String {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

fn request(input: &str, from: Format, to: Format) {
    let req = from.codec().decode_request(&read(input)).unwrap();
    let enc = to
        .codec()
        .encode_request(
            &req,
            &EncodeOptions {
                model: "upstream-model",
                default_max_tokens: 4096,
                stream_usage: req.stream,
            },
        )
        .unwrap();
    let body: Value = serde_json::from_slice(&enc.body).unwrap();
    let out = json!({"body": body, "dropped": enc.dropped});
    let name = format!(
        "{}.to_{}.json",
        input.trim_end_matches(".json"),
        to.as_str()
    );
    check(&name, &(serde_json::to_string_pretty(&out).unwrap() + "\n"));
}

fn response(input: &str, from: Format, to: Format) {
    let resp = from.codec().decode_response(&read(input), &meta()).unwrap();
    let name = format!(
        "{}.to_{}.json",
        input.trim_end_matches(".json"),
        to.as_str()
    );
    check(&name, &pretty(&to.codec().encode_response(&resp)));
}

pub fn translate(from: Format, to: Format, pieces: &[&[u8]]) -> String {
    let mut tr = StreamTranslator::new(
        from.codec().stream_decoder(&meta()),
        to.codec().stream_encoder(true),
        1 << 20,
    );
    let mut out = Vec::new();
    for p in pieces {
        tr.feed(p, &mut out).unwrap();
    }
    tr.finish(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn stream(input: &str, from: Format, to: Format) {
    let got = translate(from, to, &[&read(input)]);
    let name = format!("{}.to_{}.sse", input.trim_end_matches(".sse"), to.as_str());
    check(&name, &got);
}

#[test]
fn requests() {
    request("openai_request.json", Format::OpenAi, Format::Anthropic);
    request("openai_request.json", Format::OpenAi, Format::Gemini);
    request("openai_request.json", Format::OpenAi, Format::OpenAi);
    request("anthropic_request.json", Format::Anthropic, Format::OpenAi);
    request("anthropic_request.json", Format::Anthropic, Format::Gemini);
}

#[test]
fn responses() {
    response("anthropic_response.json", Format::Anthropic, Format::OpenAi);
    response("gemini_response.json", Format::Gemini, Format::OpenAi);
    response("gemini_response.json", Format::Gemini, Format::Anthropic);
    response("openai_response.json", Format::OpenAi, Format::Anthropic);
}

#[test]
fn streams() {
    stream("anthropic_stream.sse", Format::Anthropic, Format::OpenAi);
    stream("openai_stream.sse", Format::OpenAi, Format::Anthropic);
    stream("gemini_stream.sse", Format::Gemini, Format::OpenAi);
    stream("gemini_stream.sse", Format::Gemini, Format::Anthropic);
}

#[test]
fn errors() {
    let cases: [(Format, u16, &str, Format, &str); 3] = [
        (
            Format::Anthropic,
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            Format::OpenAi,
            "anthropic_529.to_openai.json",
        ),
        (
            Format::Gemini,
            429,
            r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
            Format::Anthropic,
            "gemini_429.to_anthropic.json",
        ),
        (
            Format::OpenAi,
            400,
            r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
            Format::Anthropic,
            "openai_400.to_anthropic.json",
        ),
    ];
    for (from, status, body, to, name) in cases {
        let err = from.codec().decode_error(status, body.as_bytes());
        check(name, &pretty(&to.codec().encode_error(&err)));
    }
}

/// Every split point of every recorded stream gives the same client stream.
#[test]
fn stream_translation_ignores_chunk_boundaries() {
    for (input, from) in [
        ("anthropic_stream.sse", Format::Anthropic),
        ("openai_stream.sse", Format::OpenAi),
        ("gemini_stream.sse", Format::Gemini),
    ] {
        let bytes = read(input);
        for to in [Format::OpenAi, Format::Anthropic] {
            let whole = translate(from, to, &[&bytes]);
            for cut in 0..=bytes.len() {
                let split = translate(from, to, &[&bytes[..cut], &bytes[cut..]]);
                assert_eq!(split, whole, "{input} → {to:?} split at {cut}");
            }
            let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(
                translate(from, to, &bytewise),
                whole,
                "{input} byte by byte"
            );
        }
    }
}

/// The usage-only reader agrees with the full decoder.
#[test]
fn usage_only_matches_the_full_decode() {
    for (file, f) in [
        ("openai_response.json", Format::OpenAi),
        ("anthropic_response.json", Format::Anthropic),
        ("gemini_response.json", Format::Gemini),
    ] {
        let body = read(file);
        let full = f.codec().decode_response(&body, &meta()).unwrap().usage;
        assert!(full.is_some(), "{file}");
        assert_eq!(f.codec().decode_usage(&body), full, "{file}");
    }
    assert_eq!(Format::OpenAi.codec().decode_usage(br#"{"id":"x"}"#), None);
}
