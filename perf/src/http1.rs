//! Small HTTP/1.1 wire helpers shared by the mock server and the bench client.
//!
//! Hand-written rather than hyper because the mock must misbehave on purpose
//! (reset, truncate mid-chunk, malformed frames) and the client must timestamp
//! each body chunk as it arrives.

use bytes::{Buf, BytesMut};

/// Upper bound for a request or response head; larger heads are rejected.
pub const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
    #[error("HTTP head too large")]
    TooLarge,
}

/// Incremental decoder for `Transfer-Encoding: chunked` bodies.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataCrlf,
    Trailer,
    Done,
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes what it can from `buf`, appending payload bytes to `out`.
    /// Returns `Ok(true)` once the terminal chunk and trailers were read.
    pub fn decode(&mut self, buf: &mut BytesMut, out: &mut BytesMut) -> Result<bool, WireError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line_end) = find_crlf(buf) else {
                        if buf.len() > 1024 {
                            return Err(WireError::Malformed("chunk size line too long"));
                        }
                        return Ok(false);
                    };
                    let line = &buf[..line_end];
                    let hex_end = line.iter().position(|b| *b == b';').unwrap_or(line.len());
                    let hex = std::str::from_utf8(&line[..hex_end])
                        .map_err(|_| WireError::Malformed("chunk size"))?
                        .trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| WireError::Malformed("chunk size"))?;
                    buf.advance(line_end + 2);
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let n = left.min(buf.len());
                    out.extend_from_slice(&buf[..n]);
                    buf.advance(n);
                    self.state = if n == left {
                        ChunkState::DataCrlf
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataCrlf => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Malformed("missing CRLF after chunk"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(line_end) = find_crlf(buf) else {
                        return Ok(false);
                    };
                    buf.advance(line_end + 2);
                    if line_end == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Case-insensitive header lookup over httparse headers.
pub fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Length(usize),
    Chunked,
    /// Read until the peer closes (responses only).
    Close,
}

pub fn body_kind(headers: &[httparse::Header<'_>]) -> Result<Option<BodyKind>, WireError> {
    if let Some(te) = header(headers, "transfer-encoding") {
        if te.eq_ignore_ascii_case(b"chunked") {
            return Ok(Some(BodyKind::Chunked));
        }
        return Err(WireError::Malformed("unsupported transfer-encoding"));
    }
    match header(headers, "content-length") {
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(|n| Some(BodyKind::Length(n)))
            .ok_or(WireError::Malformed("content-length")),
        None => Ok(None),
    }
}

/// Appends one chunk of a chunked body.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decodes_across_any_split() {
        let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\n\r\n";
        for split in 0..wire.len() {
            let mut dec = ChunkedDecoder::default();
            let mut out = BytesMut::new();
            let mut buf = BytesMut::from(&wire[..split]);
            let first = dec.decode(&mut buf, &mut out).unwrap();
            assert!(!first || split == wire.len());
            buf.extend_from_slice(&wire[split..]);
            assert!(dec.decode(&mut buf, &mut out).unwrap(), "split {split}");
            assert_eq!(&out[..], b"hello world");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut dec = ChunkedDecoder::default();
        let mut out = BytesMut::new();
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(dec.decode(&mut buf, &mut out).is_err());
    }
}
