//! Deterministic output text for the mock.

const WORDS: &[&str] = &[
    "Hello",
    "from",
    "the",
    "Sluice",
    "mock",
    "upstream",
    "which",
    "streams",
    "tokens",
    "quickly",
    "and",
    "predictably",
    "so",
    "that",
    "gateways",
    "can",
    "be",
    "measured",
    "without",
    "a",
    "real",
    "model",
    "behind",
    "them",
];

/// `n` generated tokens; each token after the first starts with a space.
pub fn generated(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let w = WORDS[i % WORDS.len()];
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

/// Splits echoed text into word-sized tokens that concatenate back to `text`.
pub fn split_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_whitespace() && !cur.trim().is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Rough token estimate (~4 bytes per token), as providers' docs suggest.
pub fn estimate_tokens(text_len: usize) -> u64 {
    (text_len as u64).div_ceil(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_round_trips() {
        for t in [
            "",
            "one",
            "two words",
            "  lead and trail  ",
            "multi\nline\ttext é ü",
        ] {
            assert_eq!(split_tokens(t).concat(), t);
        }
    }

    #[test]
    fn generated_has_n_tokens() {
        assert_eq!(generated(3).concat(), "Hello from the");
        assert_eq!(generated(0).len(), 0);
    }
}
