//! Minimal HTTP/1.1 keep-alive client for the bench and the integration tests.
//!
//! It timestamps the first body byte (time to first token for streams) and
//! hands each body chunk to a callback as it arrives.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http1::{self, BodyKind, ChunkedDecoder, MAX_HEAD};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before the response was complete")]
    Closed,
    #[error("{0}")]
    Wire(#[from] http1::WireError),
}

impl ClientError {
    /// Low-cardinality label for error counting.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect(_) => "connect",
            ClientError::Io(_) => "io",
            ClientError::Closed => "closed",
            ClientError::Wire(_) => "malformed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// When the first body byte arrived.
    pub first_byte: Option<Instant>,
    /// Whether the server will keep the connection open.
    pub keep_alive: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Serializes a request with `content-length` framing.
pub fn build_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n").as_bytes());
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(ClientError::Connect)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Sends pre-serialized request bytes and reads the whole response.
    pub async fn send(&mut self, request: &[u8]) -> Result<Response, ClientError> {
        self.send_with(request, |_| {}).await
    }

    /// Like [`Conn::send`], calling `on_body` with each decoded body piece as it arrives.
    pub async fn send_with(
        &mut self,
        request: &[u8],
        on_body: impl FnMut(&[u8]),
    ) -> Result<Response, ClientError> {
        self.write(request).await?;
        self.receive_with(on_body).await
    }

    /// Writes raw bytes, such as part of a request.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one whole response; `Err(Closed)` when the server closes first.
    pub async fn receive(&mut self) -> Result<Response, ClientError> {
        self.receive_with(|_| {}).await
    }

    async fn receive_with(
        &mut self,
        mut on_body: impl FnMut(&[u8]),
    ) -> Result<Response, ClientError> {
        let (status, headers, kind, keep_alive) = self.read_head().await?;
        let mut body = BytesMut::new();
        let mut first_byte = None;
        match kind {
            BodyKind::Length(n) => {
                while body.len() < n {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        return Err(ClientError::Closed);
                    }
                    first_byte.get_or_insert_with(Instant::now);
                    let take = (n - body.len()).min(self.buf.len());
                    let piece = self.buf.split_to(take);
                    on_body(&piece);
                    body.extend_from_slice(&piece);
                }
            }
            BodyKind::Chunked => {
                let mut dec = ChunkedDecoder::default();
                loop {
                    let before = body.len();
                    let done = dec.decode(&mut self.buf, &mut body)?;
                    if body.len() > before {
                        first_byte.get_or_insert_with(Instant::now);
                        on_body(&body[before..]);
                    }
                    if done {
                        break;
                    }
                    if self.fill().await? == 0 {
                        return Err(ClientError::Closed);
                    }
                }
            }
            BodyKind::Close => loop {
                if !self.buf.is_empty() {
                    first_byte.get_or_insert_with(Instant::now);
                    let piece = self.buf.split();
                    on_body(&piece);
                    body.extend_from_slice(&piece);
                }
                if self.fill().await? == 0 {
                    break;
                }
            },
        }
        Ok(Response {
            status,
            headers,
            body: body.freeze(),
            first_byte,
            keep_alive: keep_alive && kind != BodyKind::Close,
        })
    }

    async fn fill(&mut self) -> Result<usize, ClientError> {
        self.buf.reserve(16 * 1024);
        Ok(self.stream.read_buf(&mut self.buf).await?)
    }

    async fn read_head(
        &mut self,
    ) -> Result<(u16, Vec<(String, String)>, BodyKind, bool), ClientError> {
        loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut hdrs);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let keep_alive = !http1::header(resp.headers, "connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
                    let kind = match http1::body_kind(resp.headers)? {
                        _ if status == 204 || status == 304 => BodyKind::Length(0),
                        Some(k) => k,
                        None => BodyKind::Close,
                    };
                    let headers = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let _ = self.buf.split_to(n);
                    if (100..200).contains(&status) {
                        continue;
                    }
                    return Ok((status, headers, kind, keep_alive));
                }
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                    return Err(http1::WireError::TooLarge.into())
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return Err(http1::WireError::Malformed("response head").into()),
            }
            if self.fill().await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}
