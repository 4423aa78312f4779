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
    if bytes.len() <= CHUNK {
        // Names and ids: padded with clean bytes, one vector test.
        let mut padded = [b' '; CHUNK];
        padded[..bytes.len()].copy_from_slice(bytes);
        if clean(&padded) {
            out.extend_from_slice(bytes);
            return;
        }
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

    proptest! {
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
