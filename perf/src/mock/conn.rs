//! One client connection of the mock: parse requests, apply controls, answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::controls::{Controls, Fault};
use super::openai::{self, Ctx, Reply};
use super::{MockState, Recorded};
use crate::http1::{self, BodyKind, ChunkedDecoder, MAX_HEAD};

/// Bodies above this are refused, so a broken client cannot exhaust memory.
const MAX_BODY: usize = 64 * 1024 * 1024;

struct Request {
    method: String,
    path: String,
    controls: Controls,
    close: bool,
    authorized: bool,
    headers: Vec<(String, String)>,
    body: bytes::Bytes,
}

pub async fn handle(mut stream: TcpStream, state: Arc<MockState>) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        let req = match read_request(&mut stream, &mut buf, &state).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(msg) => {
                let reply = openai::error(400, msg, None);
                let _ = write_reply(&mut stream, reply, &fault_free(&state), true).await;
                return;
            }
        };
        if state.is_recording() {
            state.record(Recorded {
                method: req.method.clone(),
                path: req.path.clone(),
                headers: req.headers.clone(),
                body: req.body.clone(),
            });
        }
        let c = &req.controls;
        if !c.ttft.is_zero() {
            tokio::time::sleep(c.ttft).await;
        }
        let reply = match c.fault {
            Some(Fault::Reset) if c.fault_after == 0 => return reset(stream),
            Some(Fault::Stall) if c.fault_after == 0 => return stall(stream).await,
            Some(Fault::Status(code)) if c.fault_after == 0 => openai::error(
                code,
                &format!("Injected fault: status {code}"),
                c.retry_after,
            ),
            _ if !req.authorized => openai::error(401, "Incorrect API key provided.", None),
            _ => {
                let cx = Ctx {
                    state: &state,
                    controls: c,
                    id: state.next_id(),
                    created: now_secs(),
                };
                openai::route(&req.method, &req.path, &req.body, &cx)
            }
        };
        match write_reply(&mut stream, reply, c, req.close).await {
            Ok(true) if !req.close => continue,
            _ => return,
        }
    }
}

fn fault_free(state: &MockState) -> Controls {
    Controls::from_headers(&state.options, &[])
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `Ok(None)` when the client closed cleanly between requests.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    state: &MockState,
) -> Result<Option<Request>, &'static str> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or("GET").to_string();
                let path = parsed.path.unwrap_or("/").to_string();
                let close = http1::header(parsed.headers, "connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"close"))
                    || parsed.version == Some(0);
                let controls = Controls::from_headers(&state.options, parsed.headers);
                let authorized = authorized(state, parsed.headers);
                let kind = http1::body_kind(parsed.headers).map_err(|_| "bad body framing")?;
                let recorded_headers = if state.is_recording() {
                    parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let _ = buf.split_to(head_len);
                let body = read_body(stream, buf, kind).await?;
                return Ok(Some(Request {
                    method,
                    path,
                    controls,
                    close,
                    authorized,
                    headers: recorded_headers,
                    body,
                }));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err("request head too large");
                }
            }
            Err(_) => return Err("malformed request head"),
        }
        match stream.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err("connection closed mid-request"),
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
    }
}

fn authorized(state: &MockState, headers: &[httparse::Header<'_>]) -> bool {
    let Some(key) = state.options.api_key.as_deref() else {
        return true;
    };
    let bearer = http1::header(headers, "authorization")
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .is_some_and(|v| v == key.as_bytes());
    bearer || http1::header(headers, "api-key").is_some_and(|v| v == key.as_bytes())
}

async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    kind: Option<BodyKind>,
) -> Result<bytes::Bytes, &'static str> {
    match kind {
        None | Some(BodyKind::Close) => Ok(bytes::Bytes::new()),
        Some(BodyKind::Length(n)) => {
            if n > MAX_BODY {
                return Err("request body too large");
            }
            while buf.len() < n {
                buf.reserve(n - buf.len());
                match stream.read_buf(buf).await {
                    Ok(0) | Err(_) => return Err("connection closed mid-body"),
                    Ok(_) => {}
                }
            }
            Ok(buf.split_to(n).freeze())
        }
        Some(BodyKind::Chunked) => {
            let mut dec = ChunkedDecoder::default();
            let mut out = BytesMut::new();
            loop {
                if dec.decode(buf, &mut out).map_err(|_| "bad chunked body")? {
                    return Ok(out.freeze());
                }
                if out.len() > MAX_BODY {
                    return Err("request body too large");
                }
                match stream.read_buf(buf).await {
                    Ok(0) | Err(_) => return Err("connection closed mid-body"),
                    Ok(_) => {}
                }
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes the reply; `Ok(true)` when the connection may be reused.
async fn write_reply(
    stream: &mut TcpStream,
    reply: Reply,
    c: &Controls,
    close: bool,
) -> std::io::Result<bool> {
    let conn = if close { "close" } else { "keep-alive" };
    match reply {
        Reply::Json {
            status,
            mut body,
            headers,
        } => {
            let malformed = c.fault == Some(Fault::Malformed) && status == 200;
            if malformed {
                body.truncate(body.len() / 2);
            }
            let mut out = Vec::with_capacity(body.len() + 192);
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {conn}\r\n",
                    reason(status),
                    body.len()
                )
                .as_bytes(),
            );
            for (k, v) in headers {
                out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if c.fault == Some(Fault::Truncate) {
                // Promise the whole body, deliver half, then hang up.
                out.extend_from_slice(&body[..body.len() / 2]);
                stream.write_all(&out).await?;
                return Ok(false);
            }
            out.extend_from_slice(&body);
            stream.write_all(&out).await?;
            Ok(true)
        }
        Reply::Stream {
            events,
            first_content,
        } => write_stream(stream, events, first_content, c, conn).await,
    }
}

async fn write_stream(
    stream: &mut TcpStream,
    events: Vec<Vec<u8>>,
    first_content: usize,
    c: &Controls,
    conn: &str,
) -> std::io::Result<bool> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: {conn}\r\n\r\n"
    );
    let fault_at = c
        .fault
        .map(|_| (first_content + c.fault_after).min(events.len()));
    let mut out = head.into_bytes();
    for (i, ev) in events.iter().enumerate() {
        if Some(i) == fault_at {
            return stream_fault(stream, out, c).await;
        }
        http1::write_chunk(&mut out, ev);
        // Pace token events; with no delay everything goes out in one write.
        if !c.itl.is_zero() && i >= first_content && i + 1 < events.len() {
            stream.write_all(&out).await?;
            out.clear();
            tokio::time::sleep(c.itl).await;
        }
    }
    out.extend_from_slice(http1::LAST_CHUNK);
    stream.write_all(&out).await?;
    Ok(true)
}

async fn stream_fault(
    stream: &mut TcpStream,
    mut out: Vec<u8>,
    c: &Controls,
) -> std::io::Result<bool> {
    match c.fault {
        Some(Fault::Status(code)) => {
            let err = format!(
                "data: {{\"error\":{{\"message\":\"Injected fault: status {code}\",\"type\":\"server_error\",\"param\":null,\"code\":null}}}}\n\n"
            );
            http1::write_chunk(&mut out, err.as_bytes());
            out.extend_from_slice(http1::LAST_CHUNK);
            stream.write_all(&out).await?;
            Ok(true)
        }
        Some(Fault::Malformed) => {
            http1::write_chunk(
                &mut out,
                b"data: {\"choices\": [{\"delta\": {\"content\n\nevent\x00: ???\n\n",
            );
            http1::write_chunk(&mut out, b"data: [DONE]\n\n");
            out.extend_from_slice(http1::LAST_CHUNK);
            stream.write_all(&out).await?;
            Ok(true)
        }
        Some(Fault::Truncate) => {
            // Half an event inside a chunk whose promised size never arrives.
            out.extend_from_slice(b"40\r\ndata: {\"choices\":[{\"delta\":");
            stream.write_all(&out).await?;
            let _ = stream.shutdown().await;
            Ok(false)
        }
        Some(Fault::Reset) => {
            stream.write_all(&out).await?;
            stream.flush().await?;
            set_rst(stream);
            Ok(false)
        }
        Some(Fault::Stall) => {
            stream.write_all(&out).await?;
            hold_until_closed(stream).await;
            Ok(false)
        }
        None => Ok(true),
    }
}

/// Close with RST rather than FIN: SO_LINGER with a zero timeout.
fn set_rst(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

fn reset(stream: TcpStream) {
    set_rst(&stream);
    drop(stream);
}

async fn stall(mut stream: TcpStream) {
    hold_until_closed(&mut stream).await;
}

/// Holds the connection without answering until the peer gives up.
async fn hold_until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    loop {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
