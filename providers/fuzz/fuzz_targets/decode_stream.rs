//! Any bytes as an upstream stream, split where the first byte says:
//! translation never panics, and the split never changes the output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::{Format, ResponseMeta, StreamTranslator};

const ALL: [Format; 3] = [Format::OpenAi, Format::Anthropic, Format::Gemini];

fn run(from: Format, to: Format, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
    let meta = ResponseMeta {
        id: "f".into(),
        created: 0,
    };
    let mut tr = StreamTranslator::new(
        from.codec().stream_decoder(&meta),
        to.codec().stream_encoder(true),
        4096,
    );
    let mut out = Vec::new();
    for p in pieces {
        if tr.feed(p, &mut out).is_err() {
            return (out, false);
        }
    }
    let ok = tr.finish(&mut out).is_ok();
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    for from in ALL {
        for to in [Format::OpenAi, Format::Anthropic] {
            let whole = run(from, to, &[rest]);
            let split = run(from, to, &[&rest[..cut], &rest[cut..]]);
            // An oversize event may be detected at a different point, but
            // a successful translation must not depend on chunking.
            if whole.1 && split.1 {
                assert_eq!(whole.0, split.0);
            }
            assert_eq!(whole.1, split.1);
        }
    }
});
