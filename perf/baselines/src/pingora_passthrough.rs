//! The framework's own ceiling: the smallest Pingora 0.9 `ProxyHttp` that
//! forwards every request to one upstream, keep-alive pooled, nothing
//! else. With `--parse-json` it also reads each request body whole and
//! parses it as JSON before forwarding (what any body-routing gateway must
//! at least do). Sluice's passthrough is measured against this.

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use clap::Parser;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[derive(Parser)]
#[command(name = "pingora-passthrough", about = "A bare Pingora reverse proxy")]
struct Cli {
    /// Address to listen on.
    #[arg(long)]
    listen: String,
    /// The one upstream, host:port (plain HTTP/1.1).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Read each request body whole and parse it as JSON before forwarding.
    #[arg(long)]
    parse_json: bool,
}

struct Pass {
    upstream: SocketAddr,
    parse_json: bool,
}

#[async_trait]
impl ProxyHttp for Pass {
    /// The body held back while it is read whole (with `--parse-json`).
    type CTX = BytesMut;

    fn new_ctx(&self) -> BytesMut {
        BytesMut::new()
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut BytesMut,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        held: &mut BytesMut,
    ) -> Result<()> {
        if !self.parse_json {
            return Ok(());
        }
        if let Some(b) = body.take() {
            held.extend_from_slice(&b);
        }
        if end_of_stream {
            let whole = std::mem::take(held).freeze();
            if serde_json::from_slice::<serde_json::Value>(&whole).is_err() {
                return Error::e_explain(ErrorType::HTTPStatus(400), "body is not JSON");
            }
            *body = Some(whole);
        }
        Ok(())
    }
}

fn main() {
    let cli = Cli::parse();
    let conf = ServerConf {
        threads: cli.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(
        &server.configuration,
        Pass {
            upstream: cli.upstream,
            parse_json: cli.parse_json,
        },
    );
    proxy.add_tcp(&cli.listen);
    server.add_service(proxy);
    server.run_forever();
}
