//! Any bytes as a client request in each inbound format: decoding never
//! panics, and whatever decodes encodes for every upstream format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::{EncodeOptions, Format};

const ALL: [Format; 3] = [Format::OpenAi, Format::Anthropic, Format::Gemini];

fuzz_target!(|data: &[u8]| {
    let opts = EncodeOptions {
        model: "m",
        default_max_tokens: 16,
        stream_usage: true,
    };
    for from in [Format::OpenAi, Format::Anthropic] {
        if let Ok(req) = from.codec().decode_request(data) {
            for to in ALL {
                let _ = to.codec().encode_request(&req, &opts);
            }
        }
        if let Ok(e) = from.codec().decode_embed_request(data) {
            for to in ALL {
                let _ = to.codec().encode_embed_request(&e, "m");
            }
        }
    }
});
