//! What is sent: one body (`--body`), or a mix of requests from a JSONL
//! file (`--mix`), each line either a request body or
//! `{"body": {...}, "path": "/v1/...", "weight": N, "headers": {...}}`.
//! Requests are drawn by weight, independently per send.

use serde_json::Value;

use crate::client::build_request;

/// A request ready to send: serialized for HTTP/1.1, and in parts for
/// HTTP/2.
#[derive(Debug, Clone)]
pub struct Request {
    pub bytes: Vec<u8>,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
    pub weight: f64,
}

#[derive(Debug, Clone)]
pub struct Mix {
    pub requests: Vec<Request>,
    /// Running sums of the weights, for a draw by binary search.
    cumulative: Vec<f64>,
}

impl Mix {
    pub fn new(requests: Vec<Request>) -> Result<Mix, String> {
        if requests.is_empty() {
            return Err("no requests to send".into());
        }
        let mut sum = 0.0;
        let cumulative = requests
            .iter()
            .map(|r| {
                sum += r.weight;
                sum
            })
            .collect();
        Ok(Mix {
            requests,
            cumulative,
        })
    }

    pub fn pick(&self, rng: &mut fastrand::Rng) -> &Request {
        if self.requests.len() == 1 {
            return &self.requests[0];
        }
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.f64() * total;
        let i = self.cumulative.partition_point(|&c| c <= x);
        &self.requests[i.min(self.requests.len() - 1)]
    }
}

/// Where requests go and what they carry in common.
pub struct Base<'a> {
    pub hostport: &'a str,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

impl Base<'_> {
    pub fn request(
        &self,
        path: &str,
        extra: &[(String, String)],
        body: &[u8],
        weight: f64,
    ) -> Request {
        let mut headers: Vec<(String, String)> =
            self.headers.iter().chain(extra).cloned().collect();
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), "application/json".into()));
        }
        let method = if body.is_empty() { "GET" } else { "POST" };
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Request {
            bytes: build_request(method, path, self.hostport, &pairs, body),
            method,
            path: path.to_string(),
            headers,
            body: bytes::Bytes::copy_from_slice(body),
            weight,
        }
    }
}

/// Reads a JSONL mix; blank lines and lines starting with `#` are skipped.
pub fn parse_jsonl(text: &str, base: &Base) -> Result<Vec<Request>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("mix line {}: {e}", n + 1))?;
        let (body, path, weight, headers) = match v.get("body") {
            Some(body) => {
                let weight = match v.get("weight") {
                    None => 1.0,
                    Some(w) => w
                        .as_f64()
                        .filter(|w| *w > 0.0 && w.is_finite())
                        .ok_or(format!(
                            "mix line {}: weight must be a positive number",
                            n + 1
                        ))?,
                };
                let headers = v
                    .get("headers")
                    .and_then(Value::as_object)
                    .map(|h| {
                        h.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let path = v.get("path").and_then(Value::as_str).unwrap_or(base.path);
                (body.to_string(), path.to_string(), weight, headers)
            }
            None => (line.to_string(), base.path.to_string(), 1.0, Vec::new()),
        };
        out.push(base.request(&path, &headers, body.as_bytes(), weight));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bodies_or_described_requests_drawn_by_weight() {
        let base = Base {
            hostport: "h",
            path: "/v1/chat/completions",
            headers: &[],
        };
        let text = "# a mix\n{\"model\":\"a\"}\n\n{\"body\":{\"model\":\"b\"},\"weight\":3,\"path\":\"/v1/messages\",\"headers\":{\"x-k\":\"v\"}}\n";
        let reqs = parse_jsonl(text, &base).unwrap();
        assert_eq!(reqs.len(), 2);
        let first = String::from_utf8_lossy(&reqs[0].bytes).into_owned();
        assert!(first.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"));
        assert!(first.ends_with("{\"model\":\"a\"}"));
        let second = String::from_utf8_lossy(&reqs[1].bytes).into_owned();
        assert!(second.starts_with("POST /v1/messages ") && second.contains("x-k: v\r\n"));
        let mix = Mix::new(reqs).unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        let b = (0..4000)
            .filter(|_| mix.pick(&mut rng).bytes.ends_with(b"\"b\"}"))
            .count();
        assert!((2800..3200).contains(&b), "{b}");
        assert!(parse_jsonl("{\"body\":{},\"weight\":0}", &base).is_err());
        assert!(parse_jsonl("not json", &base).is_err());
    }
}
