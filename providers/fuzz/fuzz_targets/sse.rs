//! The SSE parser: no panics, bounded events, and the same events however
//! the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_providers::SseParser;

fn parse(pieces: &[&[u8]]) -> Option<Vec<sluice_providers::SseEvent>> {
    let mut p = SseParser::new(1024);
    let mut out = Vec::new();
    for piece in pieces {
        p.feed(piece, &mut out).ok()?;
    }
    p.finish(&mut out).ok()?;
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let whole = parse(&[rest]);
    if let Some(events) = &whole {
        assert!(events.iter().all(|e| e.data.len() <= 1024));
    }
    assert_eq!(whole, parse(&[&rest[..cut], &rest[cut..]]));
});
