//! Reversible masking: values become placeholders upstream and are put back
//! in what the client receives, even when a placeholder arrives split
//! across stream events.

use std::collections::HashMap;

/// Placeholders look like `<EMAIL_1>`: plain ASCII, safe inside JSON strings.
#[derive(Default)]
pub struct Vault {
    by_value: HashMap<String, String>,
    by_placeholder: HashMap<String, String>,
    counters: HashMap<String, u32>,
    /// Longest placeholder handed out, bounding what a stream holds back.
    pub longest: usize,
}

impl Vault {
    pub fn placeholder(&mut self, label: &str, value: &str) -> String {
        if let Some(p) = self.by_value.get(value) {
            return p.clone();
        }
        let n = self.counters.entry(label.to_string()).or_insert(0);
        *n += 1;
        let p = format!("<{label}_{n}>");
        self.longest = self.longest.max(p.len());
        self.by_value.insert(value.to_string(), p.clone());
        self.by_placeholder.insert(p.clone(), value.to_string());
        p
    }

    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// Puts originals back; `json` escapes them for use inside a JSON string.
    pub fn restore(&self, text: &str, json: bool) -> String {
        if self.is_empty() || !text.contains('<') {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            // Look no further than a placeholder can reach: text full of
            // `<` must stay linear.
            let hit = tail
                .bytes()
                .take(self.longest)
                .position(|b| b == b'>')
                .map(|j| &tail[..=j])
                .and_then(|p| self.by_placeholder.get(p).map(|v| (p.len(), v)));
            match hit {
                Some((len, v)) => {
                    if json {
                        let quoted = serde_json::to_string(v).unwrap_or_default();
                        out.push_str(&quoted[1..quoted.len().saturating_sub(1)]);
                    } else {
                        out.push_str(v);
                    }
                    rest = &tail[len..];
                }
                None => {
                    out.push('<');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// How many trailing bytes of `text` might begin a placeholder that the
    /// next piece completes.
    pub fn holdback(&self, text: &str) -> usize {
        if self.is_empty() {
            return 0;
        }
        match text.rfind('<') {
            Some(i) => {
                let tail = &text[i + 1..];
                let could_be = tail.len() + 1 < self.longest
                    && tail
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if could_be {
                    text.len() - i
                } else {
                    0
                }
            }
            None => 0,
        }
    }
}

/// Per-stream restoration state: one pending buffer per text or argument stream.
#[derive(Default)]
pub struct Restorer {
    pending: HashMap<(u32, Option<u32>), String>,
}

impl Restorer {
    /// Feeds a piece; returns what can be released now.
    pub fn feed(&mut self, vault: &Vault, key: (u32, Option<u32>), piece: &str) -> String {
        let buf = self.pending.entry(key).or_default();
        buf.push_str(piece);
        let hold = vault.holdback(buf);
        let mut cut = buf.len() - hold;
        while !buf.is_char_boundary(cut) {
            cut -= 1;
        }
        let ready: String = buf.drain(..cut).collect();
        vault.restore(&ready, key.1.is_some())
    }

    /// Everything still held for `key`.
    pub fn flush(&mut self, vault: &Vault, key: (u32, Option<u32>)) -> String {
        let rest = self.pending.remove(&key).unwrap_or_default();
        vault.restore(&rest, key.1.is_some())
    }

    pub fn keys(&self) -> Vec<(u32, Option<u32>)> {
        let mut k: Vec<_> = self.pending.keys().copied().collect();
        k.sort_unstable();
        k
    }
}
