//! HTTP/2 connections for the bench (cleartext, prior knowledge): each
//! carries several concurrent streams, one per worker task sharing it.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Mutex;

use super::mix::Request;
use super::stream::Tokens;
use super::Answer;

/// One connection, opened on first use and again after it failed.
pub struct H2Conn {
    addr: SocketAddr,
    send: Mutex<Option<h2::client::SendRequest<Bytes>>>,
}

impl H2Conn {
    pub fn new(addr: SocketAddr) -> H2Conn {
        H2Conn {
            addr,
            send: Mutex::new(None),
        }
    }

    async fn sender(&self) -> Result<h2::client::SendRequest<Bytes>, &'static str> {
        let mut slot = self.send.lock().await;
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|_| "connect")?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = h2::client::handshake(tcp).await.map_err(|_| "connect")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        *slot = Some(send.clone());
        Ok(send)
    }

    /// After a failure: the next request opens a new connection.
    async fn reset(&self) {
        *self.send.lock().await = None;
    }

    pub async fn send(&self, req: &Request, tokens: &mut Tokens) -> Result<Answer, &'static str> {
        let result = self.exchange(req, tokens).await;
        if result.is_err() {
            self.reset().await;
        }
        result
    }

    async fn exchange(&self, req: &Request, tokens: &mut Tokens) -> Result<Answer, &'static str> {
        let send = self.sender().await?;
        let mut send = send.ready().await.map_err(|_| "h2")?;
        let mut builder = http::Request::builder()
            .method(req.method)
            .uri(format!("http://{}{}", self.addr, req.path));
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let head = builder.body(()).map_err(|_| "malformed")?;
        let (response, mut body) = send
            .send_request(head, req.body.is_empty())
            .map_err(|_| "h2")?;
        if !req.body.is_empty() {
            let mut rest = req.body.clone();
            while !rest.is_empty() {
                body.reserve_capacity(rest.len());
                let cap = std::future::poll_fn(|cx| body.poll_capacity(cx))
                    .await
                    .ok_or("h2")?
                    .map_err(|_| "h2")?;
                let piece = rest.split_to(cap.min(rest.len()));
                body.send_data(piece, rest.is_empty()).map_err(|_| "h2")?;
            }
        }
        let response = response.await.map_err(|_| "h2")?;
        let status = response.status().as_u16();
        let stream = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut recv = response.into_body();
        let mut first_byte = None;
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|_| "h2")?;
            let now = Instant::now();
            first_byte.get_or_insert(now);
            let _ = recv.flow_control().release_capacity(chunk.len());
            tokens.feed(&chunk, now);
        }
        Ok(Answer {
            status,
            first_byte,
            stream,
        })
    }
}
