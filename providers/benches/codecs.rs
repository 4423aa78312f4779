//! Codec cost per direction: requests of ~1, 10 and 100 KB, responses, and
//! a 200-event stream (reported per event).
//! `cargo bench -p sluice-providers --bench codecs`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use sluice_providers::*;

/// An OpenAI chat request of about `size` bytes: a tool-using conversation.
fn openai_request(size: usize) -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": "You are a careful assistant."})];
    let mut i = 0;
    while serde_json::to_vec(&messages).unwrap().len() < size {
        messages.push(json!({"role": "user", "content": format!("Question {i}: what is the weather in city number {i}? Please be precise and brief.")}));
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{i}"), "type": "function", "function": {"name": "get_weather", "arguments": format!("{{\"city\":\"City {i}\"}}")}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": format!("{{\"temp\":{i},\"sky\":\"clear\"}}")}));
        messages.push(json!({"role": "assistant", "content": format!("It is {i} degrees and clear in City {i}.")}));
        i += 1;
    }
    messages.push(json!({"role": "user", "content": "Thanks, and tomorrow?"}));
    json!({
        "model": "gpt-4o", "messages": messages, "temperature": 0.3, "max_tokens": 256,
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    })
    .to_string()
    .into_bytes()
}

fn opts() -> EncodeOptions<'static> {
    EncodeOptions {
        model: "upstream",
        default_max_tokens: 1024,
        stream_usage: true,
    }
}

fn meta() -> ResponseMeta {
    ResponseMeta {
        id: "bench".into(),
        created: 0,
    }
}

fn requests(c: &mut Criterion) {
    let mut g = c.benchmark_group("request");
    for kb in [1, 10, 100] {
        let oa = openai_request(kb << 10);
        let canonical = Format::OpenAi.codec().decode_request(&oa).unwrap();
        let an = Format::Anthropic
            .codec()
            .encode_request(&canonical, &opts())
            .unwrap()
            .body;
        g.throughput(Throughput::Bytes(oa.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("parse value", format!("{kb}KB")),
            &oa,
            |b, body| {
                b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap())
            },
        );
        for (name, from, body) in [
            ("decode openai", Format::OpenAi, &oa),
            ("decode anthropic", Format::Anthropic, &an),
        ] {
            g.bench_with_input(
                BenchmarkId::new(name, format!("{kb}KB")),
                body,
                |b, body| b.iter(|| from.codec().decode_request(black_box(body)).unwrap()),
            );
        }
        for (name, from, to, body) in [
            ("openai→anthropic", Format::OpenAi, Format::Anthropic, &oa),
            ("openai→gemini", Format::OpenAi, Format::Gemini, &oa),
            ("anthropic→openai", Format::Anthropic, Format::OpenAi, &an),
        ] {
            g.bench_with_input(
                BenchmarkId::new(name, format!("{kb}KB")),
                body,
                |b, body| {
                    b.iter(|| {
                        let req = from.codec().decode_request(black_box(body)).unwrap();
                        to.codec().encode_request(&req, &opts()).unwrap()
                    })
                },
            );
        }
    }
    g.finish();
}

fn responses(c: &mut Criterion) {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
    let resp = ChatResponse {
        id: "r".into(),
        model: "m".into(),
        created: 0,
        choices: vec![Choice {
            index: 0,
            text: Some(text),
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
            finish: Some(FinishReason::ToolCalls),
            stop_sequence: None,
        }],
        usage: Some(Usage {
            prompt_tokens: 100,
            completion_tokens: 200,
            ..Usage::default()
        }),
    };
    let mut g = c.benchmark_group("response");
    for (name, from, to) in [
        ("anthropic→openai", Format::Anthropic, Format::OpenAi),
        ("gemini→openai", Format::Gemini, Format::OpenAi),
        ("openai→anthropic", Format::OpenAi, Format::Anthropic),
    ] {
        let body = from.codec().encode_response(&resp);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = from
                    .codec()
                    .decode_response(black_box(&body), &meta())
                    .unwrap();
                to.codec().encode_response(&r)
            })
        });
    }
    g.finish();
}

/// A 200-event upstream stream in `from`'s format: start, 196 text deltas, finish, usage, done.
fn stream_bytes(from: Format) -> Vec<u8> {
    let mut events = vec![StreamEvent::Start {
        id: "s".into(),
        model: "m".into(),
        created: 0,
        prompt_tokens: Some(10),
    }];
    for i in 0..196 {
        events.push(StreamEvent::Text {
            index: 0,
            text: format!(" token{i}"),
        });
    }
    events.push(StreamEvent::Finish {
        index: 0,
        reason: FinishReason::Stop,
        stop_sequence: None,
    });
    events.push(StreamEvent::Usage(Usage {
        prompt_tokens: 10,
        completion_tokens: 196,
        ..Usage::default()
    }));
    events.push(StreamEvent::Done);
    let mut enc = from.codec().stream_encoder(true);
    let mut out = Vec::new();
    for e in &events {
        enc.event(e, &mut out);
    }
    out
}

fn streams(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(200));
    for (name, from, to) in [
        ("anthropic→openai", Format::Anthropic, Format::OpenAi),
        ("openai→anthropic", Format::OpenAi, Format::Anthropic),
        ("gemini→openai", Format::Gemini, Format::OpenAi),
    ] {
        let bytes = stream_bytes(from);
        // Upstream bytes arrive in network-sized reads.
        let chunks: Vec<&[u8]> = bytes.chunks(1400).collect();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut tr = StreamTranslator::new(
                    from.codec().stream_decoder(&meta()),
                    to.codec().stream_encoder(true),
                    1 << 20,
                );
                let mut out = Vec::with_capacity(bytes.len() * 2);
                for c in &chunks {
                    tr.feed(black_box(c), &mut out).unwrap();
                }
                tr.finish(&mut out).unwrap();
                out
            })
        });
    }
    g.finish();
}

fn sse(c: &mut Criterion) {
    let bytes = stream_bytes(Format::OpenAi);
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("parse 200 events", |b| {
        b.iter(|| {
            let mut p = SseParser::new(1 << 20);
            let mut out = Vec::with_capacity(256);
            for c in bytes.chunks(1400) {
                p.feed(black_box(c), &mut out).unwrap();
            }
            out
        })
    });
    g.finish();
}

criterion_group!(benches, requests, responses, streams, sse);
criterion_main!(benches);
