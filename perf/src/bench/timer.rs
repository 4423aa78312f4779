//! Send times finer than tokio's timer. Tokio's wheel works in whole
//! milliseconds: an open loop's sends leave up to a millisecond late and in
//! bunches, one bunch a tick (six at once at 6,000/s), so what it measures
//! includes a queue the generator made. Here the last stretch before each
//! deadline is waited on one thread, in the kernel's high-resolution sleep
//! (late by the timer slack, about 50 µs), which then wakes the task.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Beyond this, tokio's timer takes the wait first: no thread hop a tick.
const COARSE: Duration = Duration::from_millis(2);

type Entry = Reverse<(Instant, u64)>;

#[derive(Default)]
struct Queue {
    due: BinaryHeap<Entry>,
    wake: std::collections::HashMap<u64, oneshot::Sender<()>>,
    next_id: u64,
    stop: bool,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    changed: Condvar,
}

pub struct FineTimer {
    inner: Arc<Inner>,
    /// Whether the thread started; without it tokio's timer does it all.
    running: bool,
}

impl FineTimer {
    pub fn start() -> FineTimer {
        let inner = Arc::new(Inner::default());
        let run = inner.clone();
        let running = std::thread::Builder::new()
            .name("bench-timer".into())
            .spawn(move || run.run())
            .is_ok();
        FineTimer { inner, running }
    }

    /// Returns at `t`, give or take the kernel's timer slack.
    pub async fn sleep_until(&self, t: Instant) {
        if !self.running {
            return tokio::time::sleep_until(t.into()).await;
        }
        if let Some(early) = t.checked_sub(COARSE).filter(|&e| e > Instant::now()) {
            tokio::time::sleep_until(early.into()).await;
        }
        if t <= Instant::now() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        {
            let Ok(mut q) = self.inner.queue.lock() else {
                return;
            };
            let id = q.next_id;
            q.next_id += 1;
            let first = q.due.peek().is_none_or(|Reverse((d, _))| t < *d);
            q.due.push(Reverse((t, id)));
            q.wake.insert(id, tx);
            if first {
                self.inner.changed.notify_one();
            }
        }
        // A dropped sender (the timer thread gone) returns at once.
        let _ = rx.await;
    }
}

impl Drop for FineTimer {
    fn drop(&mut self) {
        if let Ok(mut q) = self.inner.queue.lock() {
            q.stop = true;
        }
        self.inner.changed.notify_one();
    }
}

impl Inner {
    fn run(&self) {
        let Ok(mut q) = self.queue.lock() else { return };
        loop {
            if q.stop {
                return;
            }
            let now = Instant::now();
            while let Some(&Reverse((t, id))) = q.due.peek() {
                if t > now {
                    break;
                }
                q.due.pop();
                if let Some(tx) = q.wake.remove(&id) {
                    let _ = tx.send(());
                }
            }
            let wait = q
                .due
                .peek()
                .map_or(Duration::from_secs(1), |Reverse((t, _))| {
                    t.saturating_duration_since(now)
                });
            q = match self.changed.wait_timeout(q, wait) {
                Ok((q, _)) => q,
                Err(_) => return,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_each_sleeper_at_its_time_in_order() {
        let timer = Arc::new(FineTimer::start());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ms in [7u64, 3, 5, 1] {
            let timer = timer.clone();
            tasks.push(tokio::spawn(async move {
                let t = start + Duration::from_millis(ms);
                timer.sleep_until(t).await;
                let now = Instant::now();
                assert!(now >= t, "woke early");
                now - t
            }));
        }
        for t in tasks {
            let late = t.await.unwrap();
            // How late depends on a shared machine: only a generous bound.
            assert!(late < Duration::from_millis(500), "{late:?}");
        }
        assert!(start.elapsed() >= Duration::from_millis(7));
        // A deadline in the past returns at once.
        timer.sleep_until(start).await;
    }
}
