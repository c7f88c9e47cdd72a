//! The heartbeat: a tiny task per worker runtime that should wake every few milliseconds; when
//! it wakes later than the threshold, something blocked the worker outside any watched poll (a
//! detached, un-instrumented task), and it says so with `worker stall`, carrying the stack the
//! checker took while the heartbeat was overdue.

use std::{
    cell::Cell,
    time::{Duration, SystemTime},
};

use super::{
    record,
    stacks::Stack,
    threads::{self, since_epoch},
};

/// Starts the heartbeat on the current worker runtime (once per thread): a task that sleeps
/// `threshold / 2` at a time and warns `worker stall` when it wakes more than `threshold` late.
///
/// Lateness before the first on-time wake is not reported: right after start-up the workers
/// compete with each other and with the rest of the process for the CPU, so the first wakes
/// can be late without anything blocking.
pub fn spawn_heartbeat(threshold: Duration) {
    thread_local!(static STARTED: Cell<bool> = const { Cell::new(false) });
    if threshold.is_zero() || STARTED.with(|s| s.replace(true)) {
        return;
    }
    let period = (threshold / 2).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let worker = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    actix_web::rt::spawn(async move {
        let mut settled = false;
        loop {
            let due = tokio::time::Instant::now() + period;
            threads::set_heartbeat_due(due.into_std());
            tokio::time::sleep_until(due).await;
            let lag = due.elapsed();
            if lag <= threshold {
                settled = true;
                continue;
            }
            if !settled {
                continue;
            }
            let sample = threads::with_current(|slot| {
                let taken = slot
                    .stall_sample
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                taken.filter(|s| s.due == since_epoch(due.into_std()))
            });
            let stack = sample.map(|s| Stack::render(&s.stack.frames));
            tracing::warn!(
                worker,
                lag_ms = lag.as_millis() as u64,
                threshold_ms = threshold.as_millis() as u64,
                stack,
                "worker stall"
            );
            let end = SystemTime::now();
            record::stall(&worker, end - lag, end, stack);
        }
    });
}
