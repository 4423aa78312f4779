//! Streaming metrics from the bytes of an SSE answer as they arrive: when
//! each token event came, so time to first token, the gaps between tokens
//! and output tokens per second can be taken per request.
//!
//! A token event is a `data:` event carrying generated text: an OpenAI
//! chunk with a non-empty `"content"` (chat) or `"text"` (completions), an
//! Anthropic `text_delta`, or a Gemini chunk's text part. Servers that batch
//! several tokens into one event are counted by event, which is what a
//! client observes. A stream ends with `[DONE]` (OpenAI), `message_stop`
//! (Anthropic) or a chunk with a `finishReason` (Gemini, which may carry
//! the last text too).

use std::time::Instant;

#[derive(Debug, Default)]
pub struct Tokens {
    /// Whether the body is SSE, from its first bytes; other bodies are
    /// not scanned.
    sse: Option<bool>,
    /// The unfinished event at the end of what has arrived.
    tail: Vec<u8>,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    pub count: u64,
    /// Gaps between consecutive token events, in microseconds.
    pub gaps_us: Vec<u64>,
    /// A terminal marker arrived (`[DONE]` or `message_stop`).
    pub finished: bool,
    /// An error event arrived.
    pub error: bool,
}

impl Tokens {
    pub fn feed(&mut self, piece: &[u8], at: Instant) {
        if self.sse.is_none() {
            // SSE lines start with a field name or a ':' comment; JSON with
            // '{' or '['.
            self.sse = piece
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .map(|&b| matches!(b, b'd' | b'e' | b'i' | b'r' | b':'));
        }
        if self.sse != Some(true) {
            return;
        }
        let mut tail = std::mem::take(&mut self.tail);
        // What was scanned before holds no event end, but one may straddle
        // its last two bytes.
        let mut from = tail.len().saturating_sub(2);
        tail.extend_from_slice(piece);
        let mut start = 0;
        while let Some(end) = find_event_end(&tail, start, from) {
            self.event(&tail[start..end], at);
            start = end;
            from = end;
        }
        tail.drain(..start);
        self.tail = tail;
    }

    /// Whether the stream ended cleanly: nothing half-sent, and closed by
    /// its terminal event.
    pub fn complete(&self) -> bool {
        self.tail.iter().all(u8::is_ascii_whitespace) && self.finished
    }

    fn event(&mut self, event: &[u8], at: Instant) {
        let has = |needle: &[u8]| event.windows(needle.len()).any(|w| w == needle);
        if has(b"data: [DONE]") || has(b"message_stop") {
            self.finished = true;
            return;
        }
        if has(b"event: error")
            || has(b"\"type\":\"error\"")
            || has(b"\"type\": \"error\"")
            || event.starts_with(b"data: {\"error\"")
        {
            self.error = true;
            return;
        }
        if value_after(event, b"\"finishReason\"").is_some() {
            self.finished = true;
        }
        // A string value with at least one character.
        let token = [b"\"content\"".as_slice(), b"\"text\""].iter().any(|k| {
            value_after(event, k).is_some_and(|v| v.starts_with(b"\"") && v.get(1) != Some(&b'"'))
        });
        if token {
            if let Some(prev) = self.last {
                self.gaps_us
                    .push(at.saturating_duration_since(prev).as_micros() as u64);
            }
            self.first.get_or_insert(at);
            self.last = Some(at);
            self.count += 1;
        }
    }
}

/// What follows the first `key` in `event` that is used as an object key
/// (its colon and any spaces skipped), up to the event's end.
fn value_after<'a>(event: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(i) = event[from..].windows(key.len()).position(|w| w == key) {
        let rest = &event[from + i + key.len()..];
        let rest = rest.trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b":") {
            return Some(value.trim_ascii_start());
        }
        from += i + 1;
    }
    None
}

/// The end of the first event in `buf` after `start` (through its blank
/// line), looking from `from` on.
fn find_event_end(buf: &[u8], start: usize, from: usize) -> Option<usize> {
    (from.max(start + 1)..buf.len()).find_map(|i| {
        let lf = buf[i] == b'\n'
            && (buf[i - 1] == b'\n'
                || (i >= start + 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n'));
        lf.then_some(i + 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_token_events_across_any_split() {
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        let t0 = Instant::now();
        for split in 0..body.len() {
            let mut t = Tokens::default();
            t.feed(&body[..split], t0);
            t.feed(&body[split..], t0 + Duration::from_millis(5));
            assert_eq!(t.count, 3, "split {split}");
            assert_eq!(t.gaps_us.len(), 2);
            assert!(t.complete() && !t.error);
        }
        let mut bytewise = Tokens::default();
        for b in body {
            bytewise.feed(std::slice::from_ref(b), t0);
        }
        assert_eq!(bytewise.count, 3);
        assert!(bytewise.complete());
        let mut cut = Tokens::default();
        cut.feed(&body[..60], t0);
        assert!(!cut.complete());
        let mut json = Tokens::default();
        json.feed(b"{\"choices\":[{\"message\":{\"content\":\"x\"}}]}\n\n", t0);
        assert_eq!(json.count, 0);
        let mut err = Tokens::default();
        err.feed(b"event: error\ndata: {\"type\":\"error\"}\n\n", t0);
        assert!(err.error && err.count == 0);
    }

    #[test]
    fn gemini_streams_end_with_their_finish_reason() {
        let t0 = Instant::now();
        let mut t = Tokens::default();
        t.feed(
            concat!(
                "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}]}\r\n\r\n",
                "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}],\"role\":\"model\"},\"finishReason\":\"STOP\"}]}\r\n\r\n",
            )
            .as_bytes(),
            t0,
        );
        assert_eq!(t.count, 2);
        assert!(t.complete() && !t.error);
        // Cut before its last chunk: not complete.
        let mut cut = Tokens::default();
        cut.feed(
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}]}}]}\n\n",
            t0,
        );
        assert_eq!(cut.count, 1);
        assert!(!cut.complete());
        // An empty text is no token.
        let mut empty = Tokens::default();
        empty.feed(b"data: {\"delta\": {\"content\": \"\"}}\n\n", t0);
        assert_eq!(empty.count, 0);
    }
}
