//! A usage record as one JSON line, written by hand: the serializer serde
//! derives makes a call per token through `io::Write`, which cost 10k
//! instructions a record on the hot path; this writes the same record in
//! about a tenth of that. Numbers with a fraction are written in fixed
//! point from integers (cost from `cost_nano_usd`, latencies to the
//! microsecond): shortest-round-trip float printing cost 1k instructions
//! each. A property test reads the line back as the record it was.

use sluice_providers::json_write;

use super::usage::Entry;
#[cfg(test)]
use super::usage::UsageRecord;

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_write::write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn int(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n / 10^scale` (scale at most 9), without trailing zeros.
fn fixed(out: &mut Vec<u8>, n: u64, scale: u32) {
    const POW: [u64; 10] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
    ];
    let scale = scale.min(9);
    let p = POW[scale as usize];
    int(out, n / p);
    let (mut frac, mut width) = (n % p, scale);
    if frac == 0 {
        return;
    }
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    out.push(b'.');
    let mut b = itoa::Buffer::new();
    let digits = b.format(frac);
    out.resize(out.len() + width as usize - digits.len(), b'0');
    out.extend_from_slice(digits.as_bytes());
}

/// Milliseconds to the microsecond.
fn millis(out: &mut Vec<u8>, ms: f64) {
    if ms.is_finite() && (0.0..1e12).contains(&ms) {
        fixed(out, (ms * 1e3).round() as u64, 3);
    } else if ms.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(ms).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn opt_millis(out: &mut Vec<u8>, ms: Option<f64>) {
    match ms {
        Some(ms) => millis(out, ms),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends `r` as JSON (no newline), field for field as serde would;
/// `cost_usd` is written from `cost_nano_usd`, which it is derived from.
pub fn write(out: &mut Vec<u8>, r: &Entry) {
    out.extend_from_slice(b"{\"ts_ms\":");
    int(out, r.ts_ms);
    out.extend_from_slice(b",\"request_id\":");
    json_write::write_str(out, r.request_id);
    out.extend_from_slice(b",\"tenant\":");
    opt_string(out, r.tenant);
    out.extend_from_slice(b",\"key_id\":");
    match r.key_id {
        Some(id) if r.jwt => {
            out.extend_from_slice(b"\"jwt:");
            json_write::write_escaped(out, id);
            out.push(b'"');
        }
        id => opt_string(out, id),
    }
    out.extend_from_slice(b",\"model\":");
    opt_string(out, r.model);
    out.extend_from_slice(b",\"provider\":");
    opt_string(out, r.provider);
    out.extend_from_slice(b",\"target\":");
    opt_string(out, r.target);
    out.extend_from_slice(b",\"status\":");
    int(out, u64::from(r.status));
    out.extend_from_slice(if r.stream {
        b",\"stream\":true"
    } else {
        b",\"stream\":false"
    });
    out.extend_from_slice(b",\"prompt_tokens\":");
    int(out, r.prompt_tokens);
    out.extend_from_slice(b",\"completion_tokens\":");
    int(out, r.completion_tokens);
    out.extend_from_slice(b",\"cached_tokens\":");
    int(out, r.cached_tokens);
    out.extend_from_slice(b",\"cost_usd\":");
    fixed(out, r.cost_nano_usd, 9);
    out.extend_from_slice(b",\"cost_nano_usd\":");
    int(out, r.cost_nano_usd);
    out.extend_from_slice(b",\"latency_ms\":");
    millis(out, r.latency_ms);
    out.extend_from_slice(b",\"ttfb_ms\":");
    opt_millis(out, r.ttfb_ms);
    out.extend_from_slice(b",\"upstream_ms\":");
    opt_millis(out, r.upstream_ms);
    if r.replayed {
        out.extend_from_slice(b",\"replayed\":true");
    }
    out.push(b'}');
}

/// `r` as a JSON string (for the Redis usage stream).
pub fn to_string(r: &Entry) -> String {
    let mut out = Vec::with_capacity(512);
    write(&mut out, r);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opt_s() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(any::<String>())
    }

    #[test]
    fn fixed_point_numbers() {
        let w = |n, scale| {
            let mut out = Vec::new();
            fixed(&mut out, n, scale);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(w(0, 9), "0");
        assert_eq!(w(1, 9), "0.000000001");
        assert_eq!(w(1_500_000_000, 9), "1.5");
        assert_eq!(w(12_345, 3), "12.345");
        assert_eq!(w(12_300, 3), "12.3");
        assert_eq!(w(u64::MAX, 9), "18446744073.709551615");
    }

    #[test]
    fn jwt_subjects_are_marked() {
        let e = Entry {
            key_id: Some("ann\"x"),
            jwt: true,
            ..Entry::default()
        };
        let mut out = Vec::new();
        write(&mut out, &e);
        let back: UsageRecord = serde_json::from_slice(&out).unwrap();
        assert_eq!(back.key_id.as_deref(), Some("jwt:ann\"x"));
    }

    proptest! {
        #[test]
        fn reads_back_as_the_record_it_was(
            ts in any::<u64>(), id in any::<String>(), tenant in opt_s(), key in opt_s(),
            model in opt_s(), provider in opt_s(), target in opt_s(), status in any::<u16>(),
            stream in any::<bool>(), p in any::<u64>(), c in any::<u64>(), cached in any::<u64>(),
            cost in 0.0..1e9f64, nano in any::<u64>(), lat in 0.0..1e9f64,
            ttfb in proptest::option::of(0.0..1e9f64), up in proptest::option::of(0.0..1e9f64),
            replayed in any::<bool>(),
        ) {
            let r = UsageRecord {
                ts_ms: ts, request_id: id, tenant, key_id: key, model, provider, target, status,
                stream, prompt_tokens: p, completion_tokens: c, cached_tokens: cached,
                cost_usd: cost, cost_nano_usd: nano, latency_ms: lat, ttfb_ms: ttfb,
                upstream_ms: up, replayed,
            };
            let mut ours = Vec::new();
            write(&mut ours, &r.entry());
            // Read back as the record it is: strings, integers and flags
            // exactly; the cost as its nano-USD, latencies to the microsecond.
            let back: UsageRecord = serde_json::from_slice(&ours).unwrap();
            let usd = nano as f64 / 1e9;
            prop_assert!((back.cost_usd - usd).abs() <= usd * 1e-15, "{} {}", back.cost_usd, usd);
            let close = |a: f64, b: f64| (a - b).abs() <= 0.0005 + b * 1e-15;
            prop_assert!(close(back.latency_ms, r.latency_ms));
            let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => close(a, b),
                (a, b) => a.is_none() && b.is_none(),
            };
            prop_assert!(same(back.ttfb_ms, r.ttfb_ms) && same(back.upstream_ms, r.upstream_ms));
            let plain = |x: &UsageRecord| UsageRecord { cost_usd: 0.0, latency_ms: 0.0, ttfb_ms: None, upstream_ms: None, ..x.clone() };
            prop_assert_eq!(plain(&back), plain(&r));
        }
    }
}
