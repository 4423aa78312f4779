//! Lock-free limiters: a GCRA for requests per second (smooth, with a
//! burst), and calendar-window counters with reservation for requests and
//! tokens per minute or day.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::schema::LimitsSection;

/// Nanoseconds since the Unix epoch: windows are calendar minutes and days,
/// the same on every instance.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub const MINUTE: u64 = 60_000_000_000;
pub const DAY: u64 = 86_400 * 1_000_000_000;

/// The limits of one scope, compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// GCRA emission interval and tolerance, in nanoseconds.
    pub rps: Option<(u64, u64)>,
    pub rps_raw: Option<u32>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub tpd: Option<u64>,
    pub concurrency: Option<u32>,
}

impl Limits {
    pub fn new(s: &LimitsSection) -> Limits {
        Limits {
            rps: s.rps.filter(|r| *r > 0).map(|r| {
                let interval = 1_000_000_000 / u64::from(r);
                let burst = u64::from(s.burst.unwrap_or(r).max(1));
                (interval, interval * (burst - 1))
            }),
            rps_raw: s.rps,
            rpm: s.rpm,
            tpm: s.tpm,
            tpd: s.tpd,
            concurrency: s.concurrency,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    pub fn counts_tokens(&self) -> bool {
        self.tpm.is_some() || self.tpd.is_some()
    }
}

/// Generic cell rate algorithm: one atomic "theoretical arrival time".
#[derive(Default)]
pub struct Gcra {
    tat: AtomicU64,
}

impl Gcra {
    /// Admits one request at `now`, or says how long until one would be.
    pub fn admit(&self, now: u64, interval: u64, tolerance: u64) -> Result<(), Duration> {
        let mut cur = self.tat.load(Ordering::Relaxed);
        loop {
            let tat = cur.max(now);
            if tat > now + tolerance {
                return Err(Duration::from_nanos(tat - now - tolerance));
            }
            match self.tat.compare_exchange_weak(
                cur,
                tat + interval,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back an admission that a later check refused.
    pub fn undo(&self, interval: u64) {
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(interval))
            });
    }
}

/// A count per calendar window (minute or day), packed with the window's
/// number in one atomic so a new window starts at zero without a lock.
#[derive(Default)]
pub struct Window {
    cell: AtomicU64,
}

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

fn pack(window: u64, count: u64) -> u64 {
    (window << COUNT_BITS) | count.min(COUNT_MASK)
}

fn window_of(cell: u64) -> u64 {
    cell >> COUNT_BITS
}

/// A window's number, truncated to what the cell keeps.
pub fn window_id(now: u64, len: u64) -> u64 {
    (now / len) & ((1 << (64 - COUNT_BITS)) - 1)
}

/// When the window holding `now` ends.
pub fn reset_in(now: u64, len: u64) -> Duration {
    Duration::from_nanos(len - now % len)
}

/// Whether the window of `cell` comes after window `b` (ids wrap at 24
/// bits); a cell never used is older than everything.
fn newer_cell(cell: u64, b: u64) -> bool {
    cell != 0 && newer(window_of(cell), b)
}

/// Whether window `a` comes after `b` (ids wrap at 24 bits).
fn newer(a: u64, b: u64) -> bool {
    let d = a.wrapping_sub(b) & ((1 << (64 - COUNT_BITS)) - 1);
    d != 0 && d < 1 << (63 - COUNT_BITS)
}

impl Window {
    /// What the window `id` holds now.
    pub fn used(&self, id: u64) -> u64 {
        let c = self.cell.load(Ordering::Relaxed);
        if window_of(c) == id {
            c & COUNT_MASK
        } else {
            0
        }
    }

    /// Adds `n` to window `id` (starting it if it is not the current one);
    /// a later window that began meanwhile is left alone.
    pub fn add(&self, id: u64, n: u64) {
        let _ = self
            .cell
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                let (w, used) = (window_of(c), c & COUNT_MASK);
                if w == id {
                    Some(pack(id, used.saturating_add(n)))
                } else if newer_cell(c, id) {
                    None
                } else {
                    Some(pack(id, n))
                }
            });
    }

    /// Sets window `id` to `n`.
    pub fn set(&self, id: u64, n: u64) {
        self.cell.store(pack(id, n), Ordering::Release);
    }

    /// Takes `n` if the window stays within `limit`; else the count it holds.
    /// A caller whose clock reading is older than the cell's window is
    /// refused rather than allowed to wipe the newer window's count.
    pub fn take(&self, id: u64, n: u64, limit: u64) -> Result<u64, u64> {
        let mut cur = self.cell.load(Ordering::Relaxed);
        loop {
            let w = window_of(cur);
            if newer_cell(cur, id) {
                return Err(cur & COUNT_MASK);
            }
            let used = if w == id { cur & COUNT_MASK } else { 0 };
            let after = used.saturating_add(n);
            if after > limit {
                return Err(used);
            }
            match self.cell.compare_exchange_weak(
                cur,
                pack(id, after),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(after),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Replaces a reservation of `reserved` made in window `id` by the
    /// `actual` amount. In a later window only an excess is added: the
    /// reservation already counted against the window it was made in.
    pub fn settle(&self, id: u64, now_id: u64, reserved: u64, actual: u64) {
        let _ = self
            .cell
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                let (w, used) = (window_of(c), c & COUNT_MASK);
                if id == now_id && w == id {
                    Some(pack(
                        w,
                        used.saturating_add(actual).saturating_sub(reserved),
                    ))
                } else if actual > reserved && !newer_cell(c, now_id) {
                    let base = if w == now_id { used } else { 0 };
                    Some(pack(now_id, base.saturating_add(actual - reserved)))
                } else {
                    None
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        let g = Gcra::default();
        let (interval, tol) = (100, 200); // burst 3
        let t = 1_000;
        assert!(g.admit(t, interval, tol).is_ok());
        assert!(g.admit(t, interval, tol).is_ok());
        assert!(g.admit(t, interval, tol).is_ok());
        let wait = g.admit(t, interval, tol).unwrap_err();
        assert_eq!(wait, Duration::from_nanos(100));
        assert!(g.admit(t + 100, interval, tol).is_ok());
        assert!(g.admit(t + 100, interval, tol).is_err());
    }

    #[test]
    fn windows_reserve_settle_and_roll_over() {
        let w = Window::default();
        assert_eq!(w.take(7, 60, 100), Ok(60));
        assert_eq!(w.take(7, 50, 100), Err(60));
        w.settle(7, 7, 60, 20);
        assert_eq!(w.used(7), 20);
        assert_eq!(w.take(7, 80, 100), Ok(100));
        // A new window starts empty.
        assert_eq!(w.take(8, 100, 100), Ok(100));
        assert_eq!(w.used(7), 0);
        // A reservation from the old window: only its excess lands in the new one.
        w.settle(7, 8, 10, 30);
        assert_eq!(w.used(8), 100 + 20);
        w.settle(7, 8, 30, 10);
        assert_eq!(w.used(8), 120);
    }

    #[test]
    fn a_stale_clock_never_takes_a_window_back() {
        let w = Window::default();
        assert_eq!(w.take(8, 50, 100), Ok(50));
        // A request that read the clock in window 7 is refused...
        assert_eq!(w.take(7, 1, 100), Err(50));
        // ...and adding to window 7 leaves window 8 alone.
        w.add(7, 10);
        assert_eq!(w.used(8), 50);
        assert!(newer(0, (1 << 24) - 1), "ids wrap");
    }

    #[test]
    fn concurrent_takes_never_exceed_the_limit() {
        let w = std::sync::Arc::new(Window::default());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || (0..1000).filter(|_| w.take(1, 1, 500).is_ok()).count())
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 500);
        assert_eq!(w.used(1), 500);
    }
}
