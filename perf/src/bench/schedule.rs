//! When an open-loop run sends: a rate (constant, or steps of a ramp) and
//! an arrival process (evenly spaced, or Poisson). Each connection sends
//! its share; the union of independent Poisson senders is Poisson.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Evenly spaced sends.
    Constant,
    /// Exponentially distributed gaps (a Poisson process).
    Poisson,
}

/// Steps of `(requests per second, how long)`, run in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub steps: Vec<(f64, Duration)>,
}

impl Schedule {
    pub fn constant(rate: f64, duration: Duration) -> Schedule {
        Schedule {
            steps: vec![(rate, duration)],
        }
    }

    /// `RATE:DURATION,RATE:DURATION,…`, e.g. `1000:10s,2000:10s`.
    pub fn parse_ramp(s: &str) -> Result<Schedule, String> {
        let mut steps = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (rate, dur) = part
                .split_once(':')
                .ok_or(format!("ramp step '{part}' is not RATE:DURATION"))?;
            let rate: f64 = rate
                .trim()
                .parse()
                .map_err(|_| format!("bad rate in ramp step '{part}'"))?;
            if !(rate > 0.0 && rate.is_finite()) {
                return Err(format!("ramp step '{part}': the rate must be positive"));
            }
            steps.push((rate, super::parse_duration(dur)?));
        }
        if steps.is_empty() {
            return Err("an empty ramp".into());
        }
        Ok(Schedule { steps })
    }

    pub fn total(&self) -> Duration {
        self.steps.iter().map(|(_, d)| *d).sum()
    }

    /// The rate at `t` after the start, or `None` once the schedule is over.
    pub fn rate_at(&self, t: Duration) -> Option<f64> {
        let mut end = Duration::ZERO;
        for (rate, d) in &self.steps {
            end += *d;
            if t < end {
                return Some(*rate);
            }
        }
        None
    }

    /// The gap to a connection's next send after one at `t`, when `conns`
    /// connections share the rate; `None` when the schedule is over.
    pub fn next_gap(
        &self,
        t: Duration,
        conns: usize,
        arrivals: Arrivals,
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        let per_conn = self.rate_at(t)? / conns.max(1) as f64;
        let mean = 1.0 / per_conn;
        let gap = match arrivals {
            Arrivals::Constant => mean,
            // Inverse transform: -ln(U) × mean, U in (0, 1].
            Arrivals::Poisson => -(1.0 - rng.f64()).ln() * mean,
        };
        Some(Duration::from_secs_f64(gap.min(3600.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_parse_and_answer_the_rate_of_their_step() {
        let s = Schedule::parse_ramp("100:2s, 400:500ms").unwrap();
        assert_eq!(s.total(), Duration::from_millis(2500));
        assert_eq!(s.rate_at(Duration::from_millis(1999)), Some(100.0));
        assert_eq!(s.rate_at(Duration::from_secs(2)), Some(400.0));
        assert_eq!(s.rate_at(Duration::from_millis(2500)), None);
        for bad in ["", "100", "x:1s", "0:1s", "100:1h"] {
            assert!(Schedule::parse_ramp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn poisson_gaps_average_the_rate() {
        let s = Schedule::constant(1000.0, Duration::from_secs(1));
        let mut rng = fastrand::Rng::with_seed(7);
        let n = 20_000;
        let total: f64 = (0..n)
            .map(|_| {
                s.next_gap(Duration::ZERO, 4, Arrivals::Poisson, &mut rng)
                    .unwrap()
                    .as_secs_f64()
            })
            .sum();
        // 4 connections share 1000/s: 4 ms apart on average, within 3%.
        let mean = total / n as f64;
        assert!((mean - 0.004).abs() < 0.004 * 0.03, "{mean}");
        let even = s.next_gap(Duration::ZERO, 4, Arrivals::Constant, &mut rng);
        assert_eq!(even, Some(Duration::from_millis(4)));
    }
}
