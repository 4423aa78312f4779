//! Per-request controls, read from `x-mock-*` request headers.
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-ttft-ms: N` | delay before the response head |
//! | `x-mock-itl-ms: N` | delay between streamed tokens |
//! | `x-mock-tokens: N` | completion length |
//! | `x-mock-echo: 1` | answer with the last user message |
//! | `x-mock-fault: KIND` | `status=CODE` (error in the called format's shape), `context_length` (a 400 refusal), `reset`, `stall`, `malformed`, `truncate` |
//! | `x-mock-fault-after: N` | for streams: emit N tokens before the fault |
//! | `x-mock-retry-after: S` | `Retry-After` on a `status=` fault |

use super::MockOptions;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with a provider-style error body.
    Status(u16),
    /// Abort the TCP connection with RST.
    Reset,
    /// Never answer (or stop mid-stream and hold the connection open).
    Stall,
    /// Send bytes that are not valid SSE / JSON.
    Malformed,
    /// Close the connection in the middle of the body.
    Truncate,
    /// A 400 saying the prompt exceeds the model's context window.
    ContextLength,
}

impl Fault {
    pub fn parse(v: &str) -> Option<Fault> {
        let v = v.trim();
        if let Some(code) = v.strip_prefix("status=") {
            return code
                .parse()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(Fault::Status);
        }
        match v {
            "reset" => Some(Fault::Reset),
            "stall" => Some(Fault::Stall),
            "malformed" => Some(Fault::Malformed),
            "truncate" => Some(Fault::Truncate),
            "context_length" => Some(Fault::ContextLength),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Controls {
    pub ttft: Duration,
    pub itl: Duration,
    pub tokens: usize,
    pub echo: bool,
    pub fault: Option<Fault>,
    pub fault_after: usize,
    pub retry_after: Option<u64>,
}

impl Controls {
    pub fn from_headers(opts: &MockOptions, headers: &[httparse::Header<'_>]) -> Controls {
        let mut c = Controls {
            ttft: Duration::from_millis(opts.ttft_ms),
            itl: Duration::from_millis(opts.itl_ms),
            tokens: opts.tokens,
            echo: opts.echo,
            fault: None,
            fault_after: 0,
            retry_after: None,
        };
        for h in headers {
            let name = h.name;
            if name.len() < 7 || !name[..7].eq_ignore_ascii_case("x-mock-") {
                continue;
            }
            let Ok(value) = std::str::from_utf8(h.value) else {
                continue;
            };
            let num = || value.trim().parse::<u64>().ok();
            match name[7..].to_ascii_lowercase().as_str() {
                "ttft-ms" => c.ttft = num().map(Duration::from_millis).unwrap_or(c.ttft),
                "itl-ms" => c.itl = num().map(Duration::from_millis).unwrap_or(c.itl),
                "tokens" => c.tokens = num().map(|n| n as usize).unwrap_or(c.tokens),
                "echo" => c.echo = matches!(value.trim(), "1" | "true" | "yes"),
                "fault" => c.fault = Fault::parse(value),
                "fault-after" => c.fault_after = num().map(|n| n as usize).unwrap_or(0),
                "retry-after" => c.retry_after = num(),
                _ => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_faults() {
        assert_eq!(Fault::parse("status=429"), Some(Fault::Status(429)));
        assert_eq!(Fault::parse("status=99"), None);
        assert_eq!(Fault::parse("reset"), Some(Fault::Reset));
        assert_eq!(Fault::parse("nope"), None);
    }

    #[test]
    fn headers_override_options() {
        let h = [
            httparse::Header {
                name: "X-Mock-Tokens",
                value: b"3",
            },
            httparse::Header {
                name: "x-mock-fault",
                value: b"truncate",
            },
            httparse::Header {
                name: "x-mock-fault-after",
                value: b"2",
            },
        ];
        let c = Controls::from_headers(&MockOptions::default(), &h);
        assert_eq!(c.tokens, 3);
        assert_eq!(c.fault, Some(Fault::Truncate));
        assert_eq!(c.fault_after, 2);
    }
}
