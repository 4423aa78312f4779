//! The live progress line: once a second on standard error, what has been
//! done, the rate over the last second, and the errors so far.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

impl Progress {
    pub fn count(&self, error: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints once a second until the task is aborted.
pub async fn report(progress: Arc<Progress>, start: Instant, warmup_until: Instant) {
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let mut last = 0;
    loop {
        tick.tick().await;
        let done = progress.done.load(Ordering::Relaxed);
        let errors = progress.errors.load(Ordering::Relaxed);
        let phase = if Instant::now() < warmup_until {
            " (warm-up)"
        } else {
            ""
        };
        eprintln!(
            "[{:>4.0}s] {done} done, {}/s, {errors} errors{phase}",
            start.elapsed().as_secs_f64(),
            done - last,
        );
        last = done;
    }
}
