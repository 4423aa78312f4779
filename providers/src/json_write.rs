//! Writing JSON strings by hand, byte for byte as `serde_json` writes them.
//! serde_json looks each byte up in a table; prose needs escaping rarely
//! (a newline here, a quote there), so this skips 16 clean bytes at a time
//! with a test the compiler turns into vector compares.

const CHUNK: usize = 16;

#[inline(always)]
fn special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[inline(always)]
fn clean(chunk: &[u8]) -> bool {
    // No early exit: the fold vectorizes.
    !chunk.iter().fold(false, |hit, &b| hit | special(b))
}

/// Whether a string of at most 16 bytes (names, ids) needs escaping: its
/// first and last 8 bytes read as two words and tested a word at a time.
/// (Copying it into a padded vector cost a stalled load, as the copy's
/// small stores cannot be forwarded to one wide read.)
#[inline(always)]
fn short_special(bytes: &[u8]) -> bool {
    match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(a), Some(b)) => {
            word_special(u64::from_le_bytes(*a)) || word_special(u64::from_le_bytes(*b))
        }
        _ => bytes.iter().any(|&b| special(b)),
    }
}

/// Whether any byte of `x` is below 0x20, a quote or a backslash: the
/// classic test for a byte below n (exact for n up to 128), on `x` and on
/// `x` with the quote and the backslash turned to zeros.
#[inline(always)]
fn word_special(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    (below(x, 0x20) | below(quote, 1) | below(backslash, 1)) != 0
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Appends the inside of a JSON string holding `s` (no quotes).
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if bytes.len() <= CHUNK && !short_special(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + CHUNK) {
            if clean(chunk) {
                i += CHUNK;
                continue;
            }
        }
        let end = (i + CHUNK).min(bytes.len());
        for (j, &b) in bytes[i..end].iter().enumerate() {
            if special(b) {
                out.extend_from_slice(&bytes[start..i + j]);
                escape(out, b);
                start = i + j + 1;
            }
        }
        i = end;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `items` as a JSON array, each written by `item`.
pub fn write_array<T>(out: &mut Vec<u8>, items: &[T], mut item: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item(out, x);
    }
    out.push(b']');
}

fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 0xf) as usize],
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write_str(&mut out, s);
        out
    }

    #[test]
    fn arrays_are_separated_by_commas() {
        for n in 0..3 {
            let mut out = Vec::new();
            write_array(&mut out, &vec!["a"; n], |o, s| write_str(o, s));
            let want = serde_json::to_vec(&vec!["a"; n]).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}j\u{7f}k",
            "0123456789abcdef\n0123456789abcdef",
            "0123456789abcde\"",
            "héllo wörld — ünïcode ✓ 0123456789",
        ] {
            assert_eq!(written(s), serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn the_word_test_finds_each_byte_that_needs_escaping_wherever_it_is() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut w = [b'a'; 8];
                w[at] = b;
                assert_eq!(
                    word_special(u64::from_le_bytes(w)),
                    special(b),
                    "{b} at {at}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn short_strings_are_tested_as_byte_by_byte(bytes in proptest::collection::vec(any::<u8>(), 0..=16)) {
            prop_assert_eq!(short_special(&bytes), bytes.iter().any(|&b| special(b)));
        }

        #[test]
        fn any_string_is_written_as_serde_json_writes_it(s in any::<String>()) {
            prop_assert_eq!(written(&s), serde_json::to_vec(&s).unwrap());
        }

        #[test]
        fn prose_with_sparse_escapes(s in "[a-z \"\\\\\n\t\u{1}é]{0,200}") {
            prop_assert_eq!(written(&s), serde_json::to_vec(&s).unwrap());
        }
    }
}
