//! Prices, costs and budgets. Money is counted in nano-USD integers so sums
//! are exact and order-independent.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::config::schema::{BudgetSection, Period, PriceSection};

/// USD per million tokens = nano-USD per thousand tokens... kept as f64
/// per token in nano-USD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    input: f64,
    output: f64,
    cached_input: f64,
}

impl Price {
    pub fn new(p: &PriceSection) -> Price {
        // USD per 1e6 tokens is exactly 1e3 nano-USD per token.
        Price {
            input: p.input * 1e3,
            output: p.output * 1e3,
            cached_input: p.cached_input.unwrap_or(p.input) * 1e3,
        }
    }

    /// Nano-USD for a request's tokens (`cached` is part of `prompt`).
    pub fn cost(&self, prompt: u64, cached: u64, completion: u64) -> u64 {
        let cached = cached.min(prompt);
        let c = (prompt - cached) as f64 * self.input
            + cached as f64 * self.cached_input
            + completion as f64 * self.output;
        // Saturates, as float casts do, far beyond any real budget.
        c.ceil() as u64
    }
}

/// The price table: the shipped defaults under the config's own entries.
pub struct Prices {
    by_model: crate::lookup::Lookup<String, Price>,
}

pub const DEFAULT_PRICES: &str = include_str!("../../../conf/prices.yaml");

impl Prices {
    pub fn new(overrides: &BTreeMap<String, PriceSection>) -> Result<Prices, String> {
        let defaults: BTreeMap<String, PriceSection> =
            serde_yaml::from_str(DEFAULT_PRICES).map_err(|e| format!("conf/prices.yaml: {e}"))?;
        let by_model = defaults
            .iter()
            .chain(overrides)
            .map(|(m, p)| (m.clone(), Price::new(p)))
            .collect();
        Ok(Prices { by_model })
    }

    /// The price of a public model name, or of the upstream model it maps to.
    pub fn get(&self, model: &str, upstream: &str) -> Option<Price> {
        self.by_model
            .get(model)
            .or_else(|| self.by_model.get(upstream))
            .copied()
    }
}

pub fn nano_to_usd(n: u64) -> f64 {
    n as f64 / 1e9
}

pub fn usd_to_nano(usd: f64) -> u64 {
    (usd * 1e9).round().max(0.0) as u64
}

/// A period's number: days or months since the epoch (UTC); 0 for `total`.
pub fn period_id(period: Period, now_secs: u64) -> u32 {
    match period {
        Period::Total => 0,
        Period::Daily => (now_secs / 86_400) as u32,
        Period::Monthly => {
            let (y, m, _) = civil_from_days((now_secs / 86_400) as i64);
            (y * 12 + m as i64) as u32
        }
    }
}

/// Proleptic Gregorian date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A compiled budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub limit: u64,
    pub usd: f64,
    pub period: Period,
    pub hard: bool,
    /// Thresholds in nano-USD, ascending, with the fraction they stand for.
    pub alerts: Vec<(u64, f64)>,
    pub webhook: Option<String>,
}

impl Budget {
    pub fn new(b: &BudgetSection) -> Budget {
        let limit = usd_to_nano(b.usd);
        let mut alerts: Vec<(u64, f64)> = b
            .alert_at
            .iter()
            .map(|f| ((limit as f64 * f).round() as u64, *f))
            .collect();
        alerts.sort_by_key(|a| a.0);
        Budget {
            limit,
            usd: b.usd,
            period: b.period,
            hard: b.hard,
            alerts,
            webhook: b.webhook.clone(),
        }
    }
}

/// Spend of one key or tenant in the current period.
#[derive(Default)]
pub struct Spend {
    inner: Mutex<SpendState>,
}

#[derive(Default, Clone, Copy)]
struct SpendState {
    period: u32,
    spent: u64,
    reserved: u64,
    /// With a shared store: what this instance leased of the budget.
    leased: u64,
    /// Thresholds already alerted this period, by index.
    fired: u64,
}

/// A threshold crossed by a settlement: alert once.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub fraction: f64,
    pub spent: u64,
}

impl SpendState {
    /// Moves to `period` if it is newer: a request that read the clock
    /// before a rollover never takes the counters back.
    fn roll(&mut self, period: u32) {
        if period > self.period {
            // Reservations in flight stay: they settle into the new period.
            *self = SpendState {
                period,
                reserved: self.reserved,
                leased: self.reserved,
                ..SpendState::default()
            };
        }
    }
}

/// Spent and reserved, in nano-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendView {
    pub spent: u64,
    pub reserved: u64,
}

impl Spend {
    fn lock(&self) -> std::sync::MutexGuard<'_, SpendState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `max_cost`; refused only for a hard budget it would exceed.
    /// Returns what the budget had left when refused.
    /// `leased`: a shared store is in use, and only what this instance
    /// leased of the budget may be committed here.
    pub fn reserve(&self, b: &Budget, period: u32, max_cost: u64, leased: bool) -> Result<(), u64> {
        let mut s = self.lock();
        s.roll(period);
        let committed = s.spent.saturating_add(s.reserved);
        let cap = if leased {
            b.limit.min(s.leased)
        } else {
            b.limit
        };
        if b.hard && committed.saturating_add(max_cost) > cap {
            return Err(cap.saturating_sub(committed));
        }
        s.reserved = s.reserved.saturating_add(max_cost);
        Ok(())
    }

    /// Replaces a reservation by the actual cost; returns thresholds crossed.
    pub fn settle(&self, b: &Budget, period: u32, reserved: u64, actual: u64) -> Vec<Crossing> {
        let mut s = self.lock();
        s.roll(period);
        s.reserved = s.reserved.saturating_sub(reserved);
        s.spent = s.spent.saturating_add(actual);
        let mut out = Vec::new();
        for (i, (at, fraction)) in b.alerts.iter().enumerate().take(64) {
            let bit = 1u64 << i;
            if s.spent >= *at && s.fired & bit == 0 {
                s.fired |= bit;
                out.push(Crossing {
                    fraction: *fraction,
                    spent: s.spent,
                });
            }
        }
        out
    }

    /// This instance's committed and leased amounts.
    pub fn headroom(&self, period: u32) -> (u64, u64) {
        let mut s = self.lock();
        s.roll(period);
        (s.spent.saturating_add(s.reserved), s.leased)
    }

    /// More of the budget leased from the shared store.
    pub fn add_lease(&self, period: u32, n: u64) {
        let mut s = self.lock();
        s.roll(period);
        s.leased = s.leased.saturating_add(n);
    }

    /// Spend rebuilt from records: thresholds it passed are not re-alerted.
    pub fn restore(&self, b: &Budget, period: u32, spent: u64) {
        let mut s = self.lock();
        s.roll(period);
        s.spent = spent;
        for (i, (at, _)) in b.alerts.iter().enumerate().take(64) {
            if spent >= *at {
                s.fired |= 1 << i;
            }
        }
    }

    pub fn view(&self, period: u32) -> SpendView {
        let mut s = self.lock();
        s.roll(period);
        SpendView {
            spent: s.spent,
            reserved: s.reserved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(usd: f64, hard: bool, alert_at: Vec<f64>) -> Budget {
        Budget::new(&BudgetSection {
            usd,
            period: Period::Total,
            hard,
            alert_at,
            webhook: None,
        })
    }

    #[test]
    fn costs_are_exact_nano_usd() {
        let p = Price::new(&PriceSection {
            input: 2.5,
            output: 10.0,
            cached_input: Some(1.25),
        });
        // 1000 prompt (400 cached), 100 completion.
        assert_eq!(
            p.cost(1000, 400, 100),
            600 * 2500 + 400 * 1250 + 100 * 10_000
        );
    }

    #[test]
    fn hard_budgets_refuse_what_could_exceed() {
        let b = budget(1e-6, true, vec![]); // 1000 nano-USD
        let s = Spend::default();
        assert!(s.reserve(&b, 0, 600, false).is_ok());
        assert_eq!(s.reserve(&b, 0, 600, false), Err(400));
        s.settle(&b, 0, 600, 100);
        assert!(s.reserve(&b, 0, 600, false).is_ok());
        let soft = budget(1e-6, false, vec![]);
        assert!(s.reserve(&soft, 0, 10_000, false).is_ok());
    }

    #[test]
    fn thresholds_fire_once() {
        let b = budget(1e-6, false, vec![0.5, 0.8, 1.0]);
        let s = Spend::default();
        assert!(s.settle(&b, 0, 0, 400).is_empty());
        let c = s.settle(&b, 0, 0, 450);
        assert_eq!(
            c.iter().map(|c| c.fraction).collect::<Vec<_>>(),
            vec![0.5, 0.8]
        );
        assert!(s.settle(&b, 0, 0, 10).is_empty());
        assert_eq!(s.settle(&b, 0, 0, 500).len(), 1);
        assert!(s.settle(&b, 0, 0, 500).is_empty());
        // A new period alerts afresh.
        assert_eq!(s.settle(&b, 1, 0, 2000).len(), 3);
    }

    #[test]
    fn months_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let nov = period_id(Period::Monthly, 20_781 * 86_400);
        let dec = period_id(Period::Monthly, 20_788 * 86_400);
        assert_eq!(dec, nov + 1);
    }
}
