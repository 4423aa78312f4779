//! `GET /admin/usage?tenant=&key=&model=&from=&to=&period=`: usage records
//! filtered and summed by tenant, key, model and period.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::budget::{civil_from_days, nano_to_usd};
use super::usage::UsageRecord;

#[derive(Debug, Default, PartialEq)]
pub struct Query {
    tenant: Option<String>,
    key: Option<String>,
    model: Option<String>,
    /// Milliseconds since the epoch, inclusive / exclusive.
    from: Option<u64>,
    to: Option<u64>,
    period: Grouping,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Grouping {
    Day,
    Month,
    #[default]
    Total,
}

#[derive(Default)]
struct Sum {
    requests: u64,
    errors: u64,
    prompt: u64,
    completion: u64,
    cached: u64,
    cost: u64,
}

/// Days since the epoch of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Milliseconds since the epoch, or a `YYYY-MM-DD` date (UTC midnight).
fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let mut it = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (it.next(), it.next(), it.next()) else {
        return Err(format!(
            "'{s}': expected milliseconds since the epoch or YYYY-MM-DD"
        ));
    };
    match (y.parse::<i64>(), m.parse::<u32>(), d.parse::<u32>()) {
        (Ok(y), Ok(m @ 1..=12), Ok(d @ 1..=31)) if y >= 1970 => {
            Ok(days_from_civil(y, m, d) as u64 * 86_400_000)
        }
        _ => Err(format!("'{s}': not a valid date")),
    }
}

fn unescape(s: &str) -> String {
    let hexval = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hexval),
            b.get(i + 2).copied().and_then(hexval),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(query: &str) -> Result<Query, String> {
        let mut q = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = unescape(v);
            if v.is_empty() {
                continue;
            }
            match k {
                "tenant" => q.tenant = Some(v),
                "key" => q.key = Some(v),
                "model" => q.model = Some(v),
                "from" => q.from = Some(parse_time(&v)?),
                "to" => q.to = Some(parse_time(&v)?),
                "period" => {
                    q.period = match v.as_str() {
                        "day" | "daily" => Grouping::Day,
                        "month" | "monthly" => Grouping::Month,
                        "total" => Grouping::Total,
                        other => return Err(format!("period '{other}': use day, month or total")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown parameter '{other}' (tenant, key, model, from, to, period)"
                    ))
                }
            }
        }
        Ok(q)
    }

    fn keeps(&self, r: &UsageRecord) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        eq(&self.tenant, &r.tenant)
            && eq(&self.key, &r.key_id)
            && eq(&self.model, &r.model)
            && self.from.is_none_or(|f| r.ts_ms >= f)
            && self.to.is_none_or(|t| r.ts_ms < t)
    }

    fn period_of(&self, ts_ms: u64) -> String {
        let (y, m, d) = civil_from_days((ts_ms / 86_400_000) as i64);
        match self.period {
            Grouping::Day => format!("{y:04}-{m:02}-{d:02}"),
            Grouping::Month => format!("{y:04}-{m:02}"),
            Grouping::Total => "total".into(),
        }
    }

    pub fn report(&self, records: &[UsageRecord]) -> Value {
        let mut groups: BTreeMap<(String, String, String, String), Sum> = BTreeMap::new();
        let mut total = Sum::default();
        for r in records.iter().filter(|r| self.keeps(r)) {
            let key = (
                self.period_of(r.ts_ms),
                r.tenant.clone().unwrap_or_default(),
                r.key_id.clone().unwrap_or_default(),
                r.model.clone().unwrap_or_default(),
            );
            for s in [groups.entry(key).or_default(), &mut total] {
                s.requests += 1;
                s.errors += u64::from(r.status >= 400 || r.status == 0);
                s.prompt += r.prompt_tokens;
                s.completion += r.completion_tokens;
                s.cached += r.cached_tokens;
                s.cost += r.cost_nano_usd;
            }
        }
        let sum = |s: &Sum| {
            json!({
                "requests": s.requests, "errors": s.errors,
                "prompt_tokens": s.prompt, "completion_tokens": s.completion,
                "cached_tokens": s.cached, "cost_usd": nano_to_usd(s.cost),
            })
        };
        let data: Vec<Value> = groups
            .iter()
            .map(|((period, tenant, key, model), s)| {
                let mut v = sum(s);
                v["period"] = period.clone().into();
                v["tenant"] = tenant.clone().into();
                v["key_id"] = key.clone().into();
                v["model"] = model.clone().into();
                v
            })
            .collect();
        json!({ "data": data, "total": sum(&total) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        let ms = parse_time("2026-11-24").unwrap();
        assert_eq!(civil_from_days((ms / 86_400_000) as i64), (2026, 11, 24));
        assert!(parse_time("2026-13-01").is_err());
        assert_eq!(parse_time("12345").unwrap(), 12345);
    }

    #[test]
    fn filters_and_groups() {
        let rec = |tenant: &str, key: &str, ts: u64, cost: u64| UsageRecord {
            tenant: Some(tenant.into()),
            key_id: Some(key.into()),
            model: Some("m".into()),
            ts_ms: ts,
            status: 200,
            cost_nano_usd: cost,
            prompt_tokens: 10,
            ..UsageRecord::default()
        };
        let day = 86_400_000;
        let records = vec![
            rec("a", "k1", 0, 5),
            rec("a", "k1", day, 7),
            rec("b", "k2", day, 1),
        ];
        let q = Query::parse("tenant=a&period=day").unwrap();
        let v = q.report(&records);
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["total"]["requests"], 2);
        assert_eq!(v["total"]["prompt_tokens"], 20);
        let v = Query::parse("from=1970-01-02").unwrap().report(&records);
        assert_eq!(v["total"]["requests"], 2);
        assert!(Query::parse("bogus=1").is_err());
        assert_eq!(unescape("a%20b+c"), "a b c");
    }
}
