//! Target selection within a pool. Lock-free: a shared atomic counter and
//! each target's health atomics are all a pick reads, so every worker
//! thread picks at once without contention beyond one `fetch_add`.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::health::Health;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    /// Smooth weighted round-robin: a 3:1 split interleaves (A A B A), never bursts.
    Weighted,
    /// Fewest requests in flight relative to weight; ties go round-robin.
    LeastConnections,
    /// Power of two random choices on TTFB estimate × (in flight + 1).
    Latency,
    /// Weighted random.
    Random,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round_robin",
            Policy::Weighted => "weighted",
            Policy::LeastConnections => "least_connections",
            Policy::Latency => "latency",
            Policy::Random => "random",
        }
    }
}

/// Longest precomputed weighted schedule; larger weight sums are scaled down.
const MAX_SCHEDULE: u64 = 4096;

pub struct Balancer {
    policy: Policy,
    weights: Vec<u32>,
    /// For `Weighted`: the smooth order of one full cycle of picks.
    schedule: Vec<u16>,
    next: AtomicUsize,
}

impl Balancer {
    pub fn new(policy: Policy, weights: &[u32]) -> Balancer {
        let weights: Vec<u32> = weights.iter().map(|w| (*w).max(1)).collect();
        let schedule = if policy == Policy::Weighted {
            smooth_schedule(&weights)
        } else {
            Vec::new()
        };
        Balancer {
            policy,
            weights,
            schedule,
            next: AtomicUsize::new(0),
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// A target among those `usable` says may be tried, or `None` if none may.
    pub fn pick<'h>(
        &self,
        health: impl Fn(usize) -> &'h Health,
        now: u64,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = self.weights.len();
        match self.policy {
            Policy::RoundRobin => {
                let start = self.next.fetch_add(1, Relaxed);
                (0..n).map(|i| (start + i) % n).find(|&i| usable(i))
            }
            Policy::Weighted => {
                let len = self.schedule.len();
                let start = self.next.fetch_add(1, Relaxed);
                (0..len)
                    .map(|i| usize::from(self.schedule[(start + i) % len]))
                    .find(|&i| usable(i))
            }
            Policy::LeastConnections => {
                let start = self.next.fetch_add(1, Relaxed);
                let load = |i: usize| f64::from(health(i).in_flight()) / f64::from(self.weights[i]);
                // Scanning from a rotating start breaks ties round-robin.
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|&i| usable(i))
                    .min_by(|&a, &b| {
                        load(a)
                            .total_cmp(&load(b))
                            .then(self.weights[b].cmp(&self.weights[a]))
                    })
            }
            Policy::Latency => {
                let cands: Vec<usize> = (0..n).filter(|&i| usable(i)).collect();
                let score =
                    |i: usize| health(i).latency_us(now) * f64::from(health(i).in_flight() + 1);
                match cands.len() {
                    0 => None,
                    1 => Some(cands[0]),
                    len => {
                        let a = fastrand::usize(..len);
                        let mut b = fastrand::usize(..len - 1);
                        if b >= a {
                            b += 1;
                        }
                        let (a, b) = (cands[a], cands[b]);
                        Some(if score(b) < score(a) { b } else { a })
                    }
                }
            }
            Policy::Random => {
                let total: u64 = (0..n)
                    .filter(|&i| usable(i))
                    .map(|i| u64::from(self.weights[i]))
                    .sum();
                if total == 0 {
                    return None;
                }
                let mut r = fastrand::u64(..total);
                (0..n).filter(|&i| usable(i)).find(|&i| {
                    let w = u64::from(self.weights[i]);
                    if r < w {
                        true
                    } else {
                        r -= w;
                        false
                    }
                })
            }
        }
    }
}

/// One cycle of smooth weighted round-robin (each step: add every weight to
/// its current value, take the largest, subtract the total from it).
pub fn smooth_schedule(weights: &[u32]) -> Vec<u16> {
    let g = weights.iter().fold(0, |g, &w| gcd(g, w)).max(1);
    let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x / g)).collect();
    let total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        // Keep proportions, at least 1 each.
        w = w
            .iter()
            .map(|&x| (x * MAX_SCHEDULE / total).max(1))
            .collect();
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, &x) in current.iter_mut().zip(&w) {
            *c += x as i64;
        }
        let (best, _) =
            current.iter().enumerate().fold(
                (0, i64::MIN),
                |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
            );
        current[best] -= total;
        out.push(best as u16);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::super::health::BreakerConfig;
    use super::*;

    #[test]
    fn smooth_schedule_interleaves() {
        assert_eq!(smooth_schedule(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(smooth_schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(smooth_schedule(&[2, 2]), vec![0, 1]);
        let big = smooth_schedule(&[100_000, 1]);
        assert!(big.len() <= MAX_SCHEDULE as usize + 1 && big.contains(&1));
    }

    fn healths(n: usize) -> Vec<Arc<Health>> {
        (0..n)
            .map(|_| Arc::new(Health::new(BreakerConfig::default())))
            .collect()
    }

    #[test]
    fn least_connections_prefers_the_idle_target() {
        let hs = healths(2);
        let refs: Vec<&Health> = hs.iter().map(|h| h.as_ref()).collect();
        let b = Balancer::new(Policy::LeastConnections, &[1, 1]);
        let _busy = hs[0].acquire(0).unwrap();
        for _ in 0..10 {
            assert_eq!(b.pick(|i| refs[i], 0, |_| true), Some(1));
        }
    }

    #[test]
    fn latency_prefers_the_faster_target() {
        let hs = healths(2);
        hs[0].record(true, Some(Duration::from_millis(10)), 0);
        hs[1].record(true, Some(Duration::from_millis(1)), 0);
        let refs: Vec<&Health> = hs.iter().map(|h| h.as_ref()).collect();
        let b = Balancer::new(Policy::Latency, &[1, 1]);
        for _ in 0..20 {
            assert_eq!(b.pick(|i| refs[i], 0, |_| true), Some(1));
        }
    }

    proptest! {
        /// Whatever the weights, policy and failures, a pick is never a
        /// target whose breaker is open while a healthy one exists.
        #[test]
        fn never_picks_an_ejected_target_while_a_healthy_one_exists(
            weights in prop::collection::vec(1u32..20, 1..8),
            failing in prop::collection::vec(any::<bool>(), 8),
            policy in prop::sample::select(vec![
                Policy::RoundRobin, Policy::Weighted, Policy::LeastConnections,
                Policy::Latency, Policy::Random,
            ]),
            picks in 1usize..50,
        ) {
            let n = weights.len();
            let hs = healths(n);
            for (i, h) in hs.iter().enumerate() {
                if failing[i] {
                    for _ in 0..5 {
                        h.record(false, None, 1_000);
                    }
                } else {
                    h.record(true, Some(Duration::from_millis(1 + i as u64)), 1_000);
                }
            }
            let refs: Vec<&Health> = hs.iter().map(|h| h.as_ref()).collect();
            let b = Balancer::new(policy, &weights);
            let healthy = (0..n).any(|i| !failing[i]);
            for _ in 0..picks {
                let got = b.pick(|i| refs[i], 1_000, |i| refs[i].eligible(1_000));
                if healthy {
                    let i = got.unwrap();
                    prop_assert!(!failing[i], "picked ejected target {i}");
                } else {
                    prop_assert!(got.is_none());
                }
            }
        }
    }
}
