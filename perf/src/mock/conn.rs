//! One client connection of the mock: parse requests, apply controls, answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::common::{Ctx, Reply};
use super::controls::{Controls, Fault};
use super::format::Format;
use super::openai;
use super::{MockState, Recorded};
use crate::http1::{self, BodyKind, ChunkedDecoder, MAX_HEAD};

/// Bodies above this are refused, so a broken client cannot exhaust memory.
const MAX_BODY: usize = 64 * 1024 * 1024;

struct Request {
    method: String,
    path: String,
    controls: Controls,
    close: bool,
    format: Format,
    /// Set when the format's auth or required-header check failed.
    rejection: Option<Reply>,
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
                let c = fault_free(&state);
                let _ = write_reply(&mut stream, reply, &c, true, Format::OpenAi, &[]).await;
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
        let id = state.next_id();
        let fmt = req.format;
        let reply = match (c.fault, req.rejection) {
            (Some(Fault::Reset), _) if c.fault_after == 0 => return reset(stream),
            (Some(Fault::Stall), _) if c.fault_after == 0 => return stall(stream).await,
            (Some(Fault::Status(code)), _) if c.fault_after == 0 => fmt.error(
                code,
                &format!("Injected fault: status {code}"),
                c.retry_after,
            ),
            (Some(Fault::ContextLength), _) => fmt.error(
                400,
                "This model's maximum context length is 8192 tokens; the prompt is too long.",
                None,
            ),
            (_, Some(rejection)) => rejection,
            _ => {
                let cx = Ctx {
                    state: &state,
                    controls: c,
                    id,
                    created: now_secs(),
                };
                fmt.route(&req.method, &req.path, &req.body, &cx)
            }
        };
        let extra = fmt.response_headers(id);
        match write_reply(&mut stream, reply, c, req.close, fmt, &extra).await {
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
                let mut controls = Controls::from_headers(&state.options, parsed.headers);
                state.apply_live(&mut controls);
                let format = Format::of_path(&path);
                let rejection =
                    format.admit(state.options.api_key.as_deref(), parsed.headers, &path);
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
                    format,
                    rejection,
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
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}

/// Writes the reply; `Ok(true)` when the connection may be reused.
async fn write_reply(
    stream: &mut TcpStream,
    reply: Reply,
    c: &Controls,
    close: bool,
    fmt: Format,
    extra: &[(&'static str, String)],
) -> std::io::Result<bool> {
    let conn = if close { "close" } else { "keep-alive" };
    let mut extra_head = String::new();
    for (k, v) in extra {
        extra_head.push_str(&format!("{k}: {v}\r\n"));
    }
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
            out.extend_from_slice(extra_head.as_bytes());
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
        } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: {conn}\r\n{extra_head}\r\n"
            );
            write_stream(stream, events, first_content, c, head, fmt).await
        }
    }
}

async fn write_stream(
    stream: &mut TcpStream,
    events: Vec<Vec<u8>>,
    first_content: usize,
    c: &Controls,
    head: String,
    fmt: Format,
) -> std::io::Result<bool> {
    let fault_at = c
        .fault
        .map(|_| (first_content + c.fault_after).min(events.len()));
    let mut out = head.into_bytes();
    for (i, ev) in events.iter().enumerate() {
        if Some(i) == fault_at {
            return stream_fault(stream, out, c, fmt).await;
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
    fmt: Format,
) -> std::io::Result<bool> {
    match c.fault {
        Some(Fault::Status(code)) => {
            http1::write_chunk(&mut out, &fmt.stream_error(code));
            out.extend_from_slice(http1::LAST_CHUNK);
            stream.write_all(&out).await?;
            Ok(true)
        }
        Some(Fault::Malformed) => {
            http1::write_chunk(&mut out, fmt.malformed());
            // The stream then ends normally, so only the bad line is at fault.
            http1::write_chunk(&mut out, fmt.terminal());
            out.extend_from_slice(http1::LAST_CHUNK);
            stream.write_all(&out).await?;
            Ok(true)
        }
        Some(Fault::Truncate) => {
            // Half an event inside a chunk whose promised size never arrives.
            let partial = fmt.truncated();
            out.extend_from_slice(format!("{:x}\r\n", partial.len() + 32).as_bytes());
            out.extend_from_slice(partial);
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
        // Answered before any token: never reaches a stream.
        Some(Fault::ContextLength) | None => Ok(true),
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
