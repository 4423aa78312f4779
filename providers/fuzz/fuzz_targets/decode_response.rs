//! Any bytes as an upstream response or error body in each format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::{Format, ResponseMeta};

const ALL: [Format; 3] = [Format::OpenAi, Format::Anthropic, Format::Gemini];

fuzz_target!(|data: &[u8]| {
    let meta = ResponseMeta {
        id: "f".into(),
        created: 0,
    };
    for from in ALL {
        if let Ok(r) = from.codec().decode_response(data, &meta) {
            for to in ALL {
                let _ = to.codec().encode_response(&r);
            }
        }
        let e = from.codec().decode_error(429, data);
        for to in ALL {
            let _ = to.codec().encode_error(&e);
            let _ = to.codec().encode_stream_error(&e);
        }
        if let Ok(r) = from.codec().decode_embed_response(data) {
            let _ = Format::OpenAi.codec().encode_embed_response(&r, true);
        }
    }
});
