//! Server-sent events, incrementally, by the WHATWG event-stream rules:
//! LF, CR and CRLF line ends, multi-line `data`, comments, `event`, `id`,
//! `retry`, one leading BOM; input may be split at any byte.

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

impl SseEvent {
    pub fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("stream event larger than {0} bytes")]
    TooLarge(usize),
}

pub struct SseParser {
    max_event: usize,
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
    retry: Option<u64>,
    /// The previous chunk ended in CR: a leading LF belongs to that line end.
    after_cr: bool,
    bom_done: bool,
    head: Vec<u8>,
    /// Something of an undispatched event has been seen.
    partial: bool,
}

impl SseParser {
    pub fn new(max_event: usize) -> SseParser {
        SseParser {
            max_event,
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: None,
            last_id: None,
            retry: None,
            after_cr: false,
            bom_done: false,
            head: Vec::new(),
            partial: false,
        }
    }

    /// Parses `chunk`, appending every completed event to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if !self.bom_done {
            while let Some((&b, rest)) = chunk.split_first() {
                self.head.push(b);
                chunk = rest;
                if self.head.len() == BOM.len() || !BOM.starts_with(&self.head) {
                    break;
                }
            }
            if self.head == BOM {
                self.bom_done = true;
                self.head.clear();
            } else if !BOM.starts_with(&self.head) {
                self.bom_done = true;
                let head = std::mem::take(&mut self.head);
                self.process(&head, out)?;
            } else {
                return Ok(());
            }
        }
        self.process(chunk, out)
    }

    /// End of input. An event without its closing blank line is discarded
    /// (as the standard says); the result tells whether one was pending.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<bool, SseError> {
        if !self.bom_done {
            self.bom_done = true;
            let head = std::mem::take(&mut self.head);
            self.process(&head, out)?;
        }
        let pending = self.partial || !self.line.is_empty();
        self.line.clear();
        self.reset_event();
        Ok(pending)
    }

    fn process(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if chunk.is_empty() {
            // Keep `after_cr` for the chunk that has the next byte.
            return Ok(());
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    let cr = chunk[i] == b'\r';
                    if self.line.is_empty() {
                        self.line_done(&chunk[..i], out)?;
                    } else {
                        self.grow(&chunk[..i])?;
                        let line = std::mem::take(&mut self.line);
                        self.line_done(&line, out)?;
                        self.line = line;
                        self.line.clear();
                    }
                    chunk = &chunk[i + 1..];
                    if cr {
                        match chunk.first() {
                            Some(b'\n') => chunk = &chunk[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                }
                None => {
                    self.grow(chunk)?;
                    break;
                }
            }
        }
        Ok(())
    }

    fn grow(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + self.data.len() + bytes.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        // Same bound as `grow`, so where the input was split never matters.
        if line.len() + self.data.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        if line.is_empty() {
            if self.has_data {
                if self.data.ends_with('\n') {
                    self.data.pop();
                }
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                    id: self.last_id.clone(),
                    retry: self.retry.take(),
                });
            }
            self.reset_event();
            return Ok(());
        }
        self.partial = true;
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                self.data.push_str(&String::from_utf8_lossy(value));
                self.data.push('\n');
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            b"id" if !value.contains(&0) => {
                self.last_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
        Ok(())
    }

    fn reset_event(&mut self) {
        self.data.clear();
        self.has_data = false;
        self.event = None;
        self.partial = false;
    }
}

/// Appends one event: optional `event:` line, one `data:` line per line of
/// `data`, and the blank line that ends it.
pub fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests;
