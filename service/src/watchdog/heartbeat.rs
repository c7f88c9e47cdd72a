//! The heartbeat: a tiny task per worker runtime that should wake every few milliseconds; when
//! it wakes later than the threshold, something blocked the worker outside any watched poll (a
//! detached, un-instrumented task), and it says so with `worker stall`, carrying the stack the
//! checker took while the heartbeat was overdue.
//!
//! A heartbeat can also be late because its worker waited for a CPU (a loaded machine, the
//! first moments after start-up): that is not code blocking the worker. The kernel counts each
//! thread's time spent runnable but waiting for a CPU (`/proc/thread-self/schedstat`); a late
//! wake whose lateness was mostly such waiting is not reported. Where the kernel does not
//! provide the file, every late wake is reported.

use std::{
    cell::Cell,
    time::{Duration, SystemTime},
};

use super::{record, stacks::Stack, threads};

/// Starts the heartbeat on the current worker runtime (once per thread): a task that sleeps
/// `threshold / 2` at a time and warns `worker stall` when it wakes more than `threshold` late.
///
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
        let mut run_queue = RunQueueWait::open();
        // One read per wake: each tick's run-queue wait is the difference from the last one.
        let mut waited = run_queue.total();
        loop {
            let due = tokio::time::Instant::now() + period;
            let due_mark = threads::set_heartbeat_due(due.into_std());
            tokio::time::sleep_until(due).await;
            let lag = due.elapsed();
            let waited_before = std::mem::replace(&mut waited, run_queue.total());
            if lag <= threshold {
                continue;
            }
            if let (Some(before), Some(after)) = (waited_before, waited) {
                if after.saturating_sub(before) * 2 >= lag {
                    continue; // late for want of a CPU, not blocked
                }
            }
            let sample = threads::with_current(|slot| {
                let taken = slot
                    .stall_sample
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                taken.filter(|s| s.due == due_mark)
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

/// The calling thread's total time runnable but waiting for a CPU, from the kernel's schedstat
/// (its second field, in nanoseconds). Opened once per heartbeat, read with `pread`.
struct RunQueueWait(Option<std::fs::File>);

impl RunQueueWait {
    fn open() -> Self {
        Self(std::fs::File::open("/proc/thread-self/schedstat").ok())
    }

    fn total(&mut self) -> Option<Duration> {
        use std::os::unix::fs::FileExt;
        let file = self.0.as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let waited = text.split_whitespace().nth(1)?.parse().ok()?;
        Some(Duration::from_nanos(waited))
    }
}
