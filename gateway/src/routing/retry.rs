//! When and how long to wait before another attempt.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per model, the first included.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// No attempt starts later than this after the request arrived.
    pub deadline: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with full jitter before retry number `n` (1-based):
    /// uniform in [0, min(max_backoff, backoff × 2^(n-1))].
    pub fn delay(&self, n: u32) -> Duration {
        let cap = self
            .backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let micros = cap.as_micros() as u64;
        Duration::from_micros(if micros == 0 {
            0
        } else {
            fastrand::u64(..=micros)
        })
    }
}

/// Upstream statuses worth another attempt: timeouts, rate limits and
/// server faults. Other client errors would fail the same way again.
pub fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            deadline: Duration::from_secs(10),
        };
        for n in 1..10 {
            let cap = Duration::from_millis(100 * (1 << (n - 1))).min(p.max_backoff);
            for _ in 0..50 {
                assert!(p.delay(n) <= cap);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.delay(3)).collect();
        assert!(spread.len() > 10, "jittered");
    }

    #[test]
    fn statuses_and_retry_after() {
        for s in [408, 429, 500, 502, 503, 504, 529] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 413, 422] {
            assert!(!retryable_status(s), "{s}");
        }
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
