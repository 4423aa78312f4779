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
    /// The sender, and which opening of the connection it belongs to.
    send: Mutex<(u64, Option<h2::client::SendRequest<Bytes>>)>,
}

/// Why a request failed, and whether its connection is gone with it.
type Failure = (&'static str, bool);

impl H2Conn {
    pub fn new(addr: SocketAddr) -> H2Conn {
        H2Conn {
            addr,
            send: Mutex::new((0, None)),
        }
    }

    async fn sender(&self) -> Result<(u64, h2::client::SendRequest<Bytes>), Failure> {
        let mut slot = self.send.lock().await;
        if let Some(s) = slot.1.as_ref() {
            return Ok((slot.0, s.clone()));
        }
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|_| ("connect", false))?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = h2::client::handshake(tcp)
            .await
            .map_err(|_| ("connect", false))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        slot.0 += 1;
        slot.1 = Some(send.clone());
        Ok((slot.0, send))
    }

    pub async fn send(&self, req: &Request, tokens: &mut Tokens) -> Result<Answer, &'static str> {
        let mut opened = 0;
        let result = self.exchange(req, tokens, &mut opened).await;
        match result {
            Ok(a) => Ok(a),
            Err((kind, dead)) => {
                // Only the opening that failed is dropped: another worker
                // may have opened a new one meanwhile.
                let mut slot = self.send.lock().await;
                if dead && slot.0 == opened {
                    slot.1 = None;
                }
                Err(kind)
            }
        }
    }

    async fn exchange(
        &self,
        req: &Request,
        tokens: &mut Tokens,
        opened: &mut u64,
    ) -> Result<Answer, Failure> {
        let (gen, send) = self.sender().await?;
        *opened = gen;
        // A stream reset fails one request; an I/O error or GOAWAY, the
        // connection.
        let h2 = |e: h2::Error| ("h2", e.is_io() || e.is_go_away());
        let mut send = send.ready().await.map_err(|_| ("h2", true))?;
        let mut builder = http::Request::builder()
            .method(req.method)
            .uri(format!("http://{}{}", self.addr, req.path));
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let head = builder.body(()).map_err(|_| ("malformed", false))?;
        let (response, mut body) = send.send_request(head, req.body.is_empty()).map_err(h2)?;
        if !req.body.is_empty() {
            let mut rest = req.body.clone();
            while !rest.is_empty() {
                body.reserve_capacity(rest.len());
                let cap = std::future::poll_fn(|cx| body.poll_capacity(cx))
                    .await
                    .ok_or(("h2", false))?
                    .map_err(h2)?;
                let piece = rest.split_to(cap.min(rest.len()));
                body.send_data(piece, rest.is_empty()).map_err(h2)?;
            }
        }
        let response = response.await.map_err(h2)?;
        let status = response.status().as_u16();
        let stream = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut recv = response.into_body();
        let mut first_byte = None;
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(h2)?;
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
