//! The peer Sluice's own request path connects with: Pingora's `HttpPeer`
//! without the check, on every reuse of a pooled connection, that the
//! socket's remote address is the peer's. That check is a `getpeername(2)`
//! per request; the pool is keyed by the peer's reuse hash (address, TLS,
//! SNI, proxy, client certificate, provider group) and each pooled stream
//! owns its socket, so the answer is already known.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use pingora::protocols::l4::socket::SocketAddr;
use pingora::upstreams::peer::{HttpPeer, Peer, PeerOptions, Proxy, Tracer};
use pingora::utils::tls::CertKey;

#[derive(Clone)]
pub struct PooledPeer(pub HttpPeer);

impl Deref for PooledPeer {
    type Target = HttpPeer;
    fn deref(&self) -> &HttpPeer {
        &self.0
    }
}

impl fmt::Display for PooledPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Peer for PooledPeer {
    fn address(&self) -> &SocketAddr {
        self.0.address()
    }

    fn tls(&self) -> bool {
        self.0.tls()
    }

    fn sni(&self) -> &str {
        self.0.sni()
    }

    fn reuse_hash(&self) -> u64 {
        self.0.reuse_hash()
    }

    fn get_proxy(&self) -> Option<&Proxy> {
        self.0.get_proxy()
    }

    fn get_peer_options(&self) -> Option<&PeerOptions> {
        self.0.get_peer_options()
    }

    fn get_mut_peer_options(&mut self) -> Option<&mut PeerOptions> {
        self.0.get_mut_peer_options()
    }

    fn get_client_cert_key(&self) -> Option<&Arc<CertKey>> {
        self.0.get_client_cert_key()
    }

    fn get_tracer(&self) -> Option<Tracer> {
        self.0.get_tracer()
    }

    fn matches_fd<V: std::os::unix::io::AsRawFd>(&self, _fd: V) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_but_the_fd_check_is_the_http_peers() {
        let mut p = HttpPeer::new("127.0.0.1:8443", true, "up.example".into());
        p.group_key = 7;
        let w = PooledPeer(p.clone());
        assert_eq!(w.reuse_hash(), p.reuse_hash());
        assert_eq!(w.address(), p.address());
        assert_eq!(w.sni(), "up.example");
        assert!(w.tls());
        assert_eq!(
            w.get_peer_options().map(|o| o.verify_cert),
            p.get_peer_options().map(|o| o.verify_cert)
        );
        assert_eq!(w.to_string(), p.to_string());
        // A socket that is not connected anywhere still "matches": the pool's key decides.
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(w.matches_fd(std::os::unix::io::AsRawFd::as_raw_fd(&s)));
    }
}
