//! Work for clients that have gone: what happens to a waiting handler when its client leaves.
//!
//! The server refuses half-closed HTTP/1 connections (`startup`), so when a client closes its
//! connection while its handler waits, actix-web drops the connection and with it the
//! handler's future, at the await it is parked on: a lock waiter leaves the mutex's queue, a
//! holder releases the lock early, a timer is cancelled. Work already running on the blocking
//! pool runs to its end (a thread cannot be interrupted) and its result is discarded; a
//! handler that blocks its worker is not polled, so it cannot be dropped before it returns.
//!
//! A dropped request has no access line (the middleware is dropped with it), so [`noted`]
//! writes `request abandoned` in its place, inside the handler's span. What actix-web does and
//! how it was checked: `docs/client-disconnects.md`.

use std::{future::Future, time::Instant};

/// Awaits `wait`; if the future is dropped before `wait` finished, logs `request abandoned`
/// with what the handler was waiting for and for how long.
pub async fn noted<F: Future>(waiting_for: &'static str, wait: F) -> F::Output {
    let mut notice = Notice {
        waiting_for,
        since: Instant::now(),
        finished: false,
    };
    let output = wait.await;
    notice.finished = true;
    output
}

struct Notice {
    waiting_for: &'static str,
    since: Instant,
    finished: bool,
}

impl Drop for Notice {
    fn drop(&mut self) {
        if !self.finished {
            tracing::info!(
                waiting_for = self.waiting_for,
                waited_ms = self.since.elapsed().as_millis() as u64,
                "request abandoned"
            );
        }
    }
}
