//! Helpers: start a mock, send one request, split SSE bodies into events.

use serde_json::Value;
use sluice_perf::client::{build_request, ClientError, Conn, Response};
use sluice_perf::mock::{MockOptions, MockServer, MockState};

/// Request headers as (name, value) pairs.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

pub async fn mock(options: MockOptions) -> MockServer {
    MockServer::start(MockState::new(options)).await.unwrap()
}

pub async fn try_send(
    m: &MockServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, ClientError> {
    let mut conn = Conn::connect(m.addr).await?;
    let host = m.addr.to_string();
    conn.send(&build_request(
        method,
        path,
        &host,
        headers,
        body.as_bytes(),
    ))
    .await
}

pub async fn send(
    m: &MockServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    try_send(m, method, path, headers, body).await.unwrap()
}

pub fn json(r: &Response) -> Value {
    r.json()
        .unwrap_or_else(|| panic!("not JSON: {}", String::from_utf8_lossy(&r.body)))
}

/// One server-sent event: its `event:` name (if any) and its `data:` text.
#[derive(Debug)]
pub struct Sse {
    pub event: Option<String>,
    pub data: String,
}

impl Sse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// Splits on blank lines, accepting LF or CRLF line endings.
pub fn events(body: &[u8]) -> Vec<Sse> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut ev = Sse {
                event: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    ev.event = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    ev.data.push_str(v);
                }
            }
            ev
        })
        .collect()
}

pub fn event_names(evs: &[Sse]) -> Vec<&str> {
    evs.iter()
        .map(|e| e.event.as_deref().unwrap_or(""))
        .collect()
}
