//! canonical → format → canonical is the identity wherever the format can
//! express the input (property tests over generated conversations).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sluice_providers::*;

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?é\"\\\\\n]{1,24}"
}

fn image() -> impl Strategy<Value = Image> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|p| Image::Url {
            url: format!("https://img.example/{p}.png"),
            detail: None
        }),
        "[A-Za-z0-9+/]{4,16}".prop_map(|d| Image::Base64 {
            media_type: "image/png".into(),
            data: d
        }),
    ]
}

/// One text part, or text followed by images (array form survives).
fn user_content() -> impl Strategy<Value = Vec<Part>> {
    (text(), prop::collection::vec(image(), 0..3)).prop_map(|(t, imgs)| {
        let mut v = vec![Part::Text(t)];
        v.extend(imgs.into_iter().map(Part::Image));
        v
    })
}

fn arguments() -> impl Strategy<Value = String> {
    prop::collection::btree_map("[a-z]{1,6}", text(), 0..3).prop_map(|m| {
        let o: Map<String, Value> = m.into_iter().map(|(k, v)| (k, json!(v))).collect();
        Value::Object(o).to_string()
    })
}

fn tools() -> impl Strategy<Value = Vec<Tool>> {
    prop::collection::vec(
        ("[a-z_]{1,10}", prop::option::of(text())).prop_map(|(name, description)| Tool {
            name,
            description,
            parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            strict: None,
        }),
        0..3,
    )
}

/// user → assistant (text and/or tool calls) → tool results … → user.
fn conversation() -> impl Strategy<Value = Vec<Message>> {
    let round = (
        user_content(),
        prop::option::of(text()),
        prop::collection::vec(("[a-z]{1,8}", arguments(), text(), any::<bool>()), 0..3),
    );
    (prop::collection::vec(round, 0..4), user_content()).prop_map(|(rounds, last)| {
        let mut msgs = Vec::new();
        let mut results: Vec<Message> = Vec::new();
        for (i, (user, reply, calls)) in rounds.into_iter().enumerate() {
            msgs.append(&mut results);
            msgs.push(Message::new(Role::User, user));
            let mut a = Message::new(Role::Assistant, reply.into_iter().map(Part::Text).collect());
            for (j, (name, args, result, is_error)) in calls.into_iter().enumerate() {
                let id = format!("call_{i}_{j}");
                a.tool_calls.push(ToolCall {
                    id: id.clone(),
                    name,
                    arguments: args,
                });
                let mut r = Message::text(Role::Tool, result);
                r.tool_call_id = Some(id);
                r.is_error = is_error;
                results.push(r);
            }
            if a.content.is_empty() && a.tool_calls.is_empty() {
                a.content.push(Part::Text("ok".into()));
            }
            msgs.push(a);
        }
        msgs.append(&mut results);
        msgs.push(Message::new(Role::User, last));
        msgs
    })
}

/// Decimal values as clients write them (arbitrary f64 bits need not
/// survive JSON text).
fn unit() -> impl Strategy<Value = f64> {
    (0u32..=100).prop_map(|x| f64::from(x) / 100.0)
}

fn opts() -> EncodeOptions<'static> {
    EncodeOptions {
        model: "m",
        default_max_tokens: 100,
        stream_usage: false,
    }
}

fn choice(tools: &[Tool]) -> impl Strategy<Value = Option<ToolChoice>> {
    let names: Vec<String> = tools.iter().map(|t| t.name.clone()).collect();
    let named = if names.is_empty() {
        Just(None).boxed()
    } else {
        prop::sample::select(names)
            .prop_map(|n| Some(ToolChoice::Named(n)))
            .boxed()
    };
    if tools.is_empty() {
        Just(None).boxed()
    } else {
        prop_oneof![
            Just(None),
            Just(Some(ToolChoice::Auto)),
            Just(Some(ToolChoice::None)),
            Just(Some(ToolChoice::Required)),
            named,
        ]
        .boxed()
    }
}

fn anthropic_request() -> impl Strategy<Value = ChatRequest> {
    (conversation(), tools(), prop::option::of(text())).prop_flat_map(|(msgs, tools, system)| {
        let c = choice(&tools);
        (
            Just((msgs, tools, system)),
            c,
            any::<bool>(),
            (
                1u32..5000,
                prop::option::of(unit()),
                prop::option::of(unit()),
                prop::option::of(1u32..100),
            ),
            (
                prop::collection::vec("[A-Z]{1,5}", 0..3),
                any::<bool>(),
                prop::option::of("[a-z0-9-]{1,12}"),
            ),
        )
            .prop_map(
                |(
                    (msgs, tools, system),
                    tool_choice,
                    serial,
                    (max, temp, top_p, top_k),
                    (stop, stream, user),
                )| {
                    let mut r = ChatRequest::new(Format::Anthropic, "m");
                    if let Some(s) = system {
                        r.messages.push(Message::text(Role::System, s));
                    }
                    r.messages.extend(msgs);
                    r.parallel_tool_calls = (serial
                        && !matches!(tool_choice, None | Some(ToolChoice::None)))
                    .then_some(false);
                    r.tools = tools;
                    r.tool_choice = tool_choice;
                    r.max_tokens = Some(max);
                    r.temperature = temp;
                    r.top_p = top_p;
                    r.top_k = top_k;
                    r.stop = stop;
                    r.stream = stream;
                    r.include_usage = stream;
                    r.user = user;
                    r
                },
            )
    })
}

fn openai_request() -> impl Strategy<Value = ChatRequest> {
    (
        conversation(),
        tools(),
        prop::option::of(text()),
        any::<bool>(),
    )
        .prop_flat_map(|(msgs, tools, system, developer)| {
            let c = choice(&tools);
            (
                Just((msgs, tools, system, developer)),
                c,
                (
                    prop::option::of(any::<bool>()),
                    prop::option::of(1u32..5000),
                    prop::option::of(unit()),
                    prop::option::of(1u32..4),
                    prop::option::of(any::<i64>()),
                ),
                (
                    prop::collection::vec("[A-Z]{1,5}", 0..3),
                    prop::option::of((any::<bool>(), any::<bool>())),
                    prop::option::of("[a-z0-9-]{1,12}"),
                    prop_oneof![
                        Just(None),
                        Just(Some(ResponseFormat::JsonObject)),
                        Just(Some(ResponseFormat::JsonSchema {
                            name: "r".into(),
                            schema: json!({"type": "object"}),
                            strict: Some(true)
                        }))
                    ],
                ),
            )
                .prop_map(
                    |(
                        (msgs, tools, system, developer),
                        tool_choice,
                        (ptc, max, temp, n, seed),
                        (stop, stream, user, rf),
                    )| {
                        let mut r = ChatRequest::new(Format::OpenAi, "m");
                        if let Some(s) = system {
                            let role = if developer {
                                Role::Developer
                            } else {
                                Role::System
                            };
                            r.messages.push(Message::text(role, s));
                        }
                        r.messages.extend(msgs);
                        // OpenAI tool messages have no error flag.
                        for m in &mut r.messages {
                            m.is_error = false;
                        }
                        r.tools = tools;
                        r.tool_choice = tool_choice;
                        r.parallel_tool_calls = ptc;
                        r.max_tokens = max;
                        r.temperature = temp;
                        r.n = n;
                        r.seed = seed;
                        r.stop = stop;
                        if let Some((include_usage, _)) = stream {
                            r.stream = true;
                            r.include_usage = include_usage;
                        }
                        r.user = user;
                        r.response_format = rf;
                        r.extra.insert("logprobs".into(), json!(true));
                        r
                    },
                )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn anthropic_round_trips(req in anthropic_request()) {
        let codec = Format::Anthropic.codec();
        let enc = codec.encode_request(&req, &EncodeOptions { model: "m", ..opts() }).unwrap();
        prop_assert!(enc.dropped.is_empty(), "{:?}", enc.dropped);
        let back = codec.decode_request(&enc.body).unwrap();
        prop_assert_eq!(back, req);
    }

    #[test]
    fn openai_round_trips(req in openai_request()) {
        let codec = Format::OpenAi.codec();
        let enc = codec.encode_request(&req, &opts()).unwrap();
        prop_assert!(enc.dropped.is_empty(), "{:?}", enc.dropped);
        let back = codec.decode_request(&enc.body).unwrap();
        prop_assert_eq!(back, req);
    }

    /// Anthropic ⇄ OpenAI: everything Anthropic can say survives a trip through OpenAI.
    #[test]
    fn anthropic_through_openai(mut req in anthropic_request()) {
        // OpenAI tool messages have no error flag.
        for m in &mut req.messages {
            m.is_error = false;
        }
        let o = Format::OpenAi.codec().encode_request(&req, &opts()).unwrap();
        prop_assert!(o.dropped.iter().all(|d| d == "top_k"), "{:?}", o.dropped);
        let mid = Format::OpenAi.codec().decode_request(&o.body).unwrap();
        let a = Format::Anthropic.codec().encode_request(&mid, &opts()).unwrap();
        let mut back = Format::Anthropic.codec().decode_request(&a.body).unwrap();
        back.top_k = req.top_k;
        back.origin = req.origin;
        back.include_usage = req.include_usage;
        prop_assert_eq!(back, req);
    }
}
