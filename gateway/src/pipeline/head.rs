//! Response heads Sluice builds itself, as plain `http` parts turned into
//! Pingora's head once at the end. Pingora's `insert_header` parses every
//! name again (and copies a `HeaderName` to re-title it); here names are
//! parsed once, at compile time.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use pingora::http::ResponseHeader;

pub const X_SLUICE_PROVIDER: HeaderName = HeaderName::from_static("x-sluice-provider");
pub const X_SLUICE_TARGET: HeaderName = HeaderName::from_static("x-sluice-target");
pub const X_SLUICE_ATTEMPTS: HeaderName = HeaderName::from_static("x-sluice-attempts");
pub const X_SLUICE_REQUEST_ID: HeaderName = HeaderName::from_static("x-sluice-request-id");
pub const X_SLUICE_DROPPED_PARAMS: HeaderName = HeaderName::from_static("x-sluice-dropped-params");

/// Room for the headers Sluice adds (its own, rate limits, framing): a
/// map that has to grow rehashes everything in it.
pub const OWN: usize = 16;

/// A response head being built.
pub struct Head(http::response::Parts);

impl Head {
    pub fn new(status: StatusCode, capacity: usize) -> Head {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = status;
        parts.headers = HeaderMap::with_capacity(capacity);
        Head(parts)
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.headers.append(name, value);
    }

    pub fn remove(&mut self, name: HeaderName) {
        self.0.headers.remove(name);
    }

    /// `value` when it is a valid header value (names and labels from
    /// config always are; a bad one is left out rather than failing).
    pub fn put_str(&mut self, name: HeaderName, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.put(name, v);
        }
    }

    /// A body of unknown length (a stream) goes out chunked: without a
    /// framing header Pingora delimits it by closing the connection, so
    /// every stream would cost the client a new one. HTTP/2 drops the
    /// header; HTTP/1.0 clients cannot take it; 1xx, 204 and 304 answers
    /// have no body to frame.
    pub fn chunked_unless_sized(&mut self, client: http::Version) {
        let status = self.0.status;
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if client != http::Version::HTTP_10
            && !bodiless
            && !self.0.headers.contains_key(http::header::CONTENT_LENGTH)
        {
            self.0.headers.insert(
                http::header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }

    pub fn done(self) -> Box<ResponseHeader> {
        Box::new(ResponseHeader::from(self.0))
    }
}

/// Where Sluice's own headers go: a head it is building, or one Pingora
/// built (a passthrough answer).
pub trait Headers {
    fn put(&mut self, name: HeaderName, value: HeaderValue);
}

impl Headers for Head {
    fn put(&mut self, name: HeaderName, value: HeaderValue) {
        self.0.headers.insert(name, value);
    }
}

impl Headers for ResponseHeader {
    fn put(&mut self, name: HeaderName, value: HeaderValue) {
        let _ = self.insert_header(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_head_keeps_status_and_every_value() {
        let mut h = Head::new(StatusCode::CREATED, 4);
        h.put(X_SLUICE_ATTEMPTS, HeaderValue::from(2u32));
        h.append(http::header::VARY, HeaderValue::from_static("a"));
        h.append(http::header::VARY, HeaderValue::from_static("b"));
        h.put_str(X_SLUICE_TARGET, "bad\nvalue");
        let r = h.done();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.headers["x-sluice-attempts"], "2");
        assert_eq!(r.headers.get_all("vary").iter().count(), 2);
        assert!(r.headers.get("x-sluice-target").is_none());
    }

    #[test]
    fn only_sizeless_bodies_of_http11_answers_go_chunked() {
        let framing = |status: StatusCode, version, sized: bool| {
            let mut h = Head::new(status, 4);
            if sized {
                h.put(http::header::CONTENT_LENGTH, HeaderValue::from(3u32));
            }
            h.chunked_unless_sized(version);
            h.done().headers.get("transfer-encoding").cloned()
        };
        let v11 = http::Version::HTTP_11;
        assert_eq!(framing(StatusCode::OK, v11, false).unwrap(), "chunked");
        assert!(framing(StatusCode::OK, v11, true).is_none());
        assert!(framing(StatusCode::OK, http::Version::HTTP_10, false).is_none());
        assert!(framing(StatusCode::NO_CONTENT, v11, false).is_none());
        assert!(framing(StatusCode::NOT_MODIFIED, v11, false).is_none());
    }
}
