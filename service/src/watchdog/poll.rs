//! The request side: the request middleware marks the poll of each request with
//! [`poll_request`], and the end of a poll the checker warned about gets its closing line.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use tracing::Id;

use super::{
    record,
    stacks::{self, Stack},
    threads::{self, Reported, RequestFrame},
};
use crate::request_id::RequestId;

/// Whether a watchdog was started; [`poll_request`] does nothing otherwise.
static ENABLED: AtomicBool = AtomicBool::new(false);

pub(super) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Marks the current thread as polling request `id` until the guard drops. The request
/// middleware calls it around each poll of the request, inside the request's root span `span`
/// (which may be disabled).
pub fn poll_request(id: &RequestId, span: &tracing::Span) -> PollGuard {
    if !ENABLED.load(Ordering::Relaxed) {
        return PollGuard { active: false };
    }
    threads::with_current(|slot| {
        let mut state = slot.state();
        state.begin_poll_if_idle();
        state.request = Some(RequestFrame {
            id: *id,
            span: span.id(),
        });
    });
    PollGuard { active: true }
}

/// Ends a request's poll when dropped (see [`poll_request`]).
#[must_use = "the poll ends when the guard drops"]
#[derive(Debug)]
pub struct PollGuard {
    active: bool,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let ended = threads::with_current(|slot| {
            let mut state = slot.state();
            state.request = None;
            if !state.stack.is_empty() {
                return None;
            }
            state.poll_ended().map(|ended| (ended, slot.thread.clone()))
        });
        if let Some(((blocked, reported), thread)) = ended {
            // Still inside the request's span, if it has one: the line is the request's.
            poll_ended(None, &thread, blocked, reported);
        }
    }
}

/// The closing line of a poll the checker warned about, with the frames every stack sample
/// shared, and the end of its record entry. `parent`: the poll's outermost span, still open.
pub(super) fn poll_ended(parent: Option<Id>, thread: &str, blocked: Duration, reported: Reported) {
    if let Some(seq) = reported.record {
        record::finish(seq, SystemTime::now());
    }
    let stack =
        (!reported.samples.is_empty()).then(|| Stack::render(&stacks::common(&reported.samples)));
    tracing::warn!(
        parent: parent.or_else(|| tracing::Span::current().id()),
        handler = reported.handler,
        request_id = reported.request_id.as_deref(),
        thread,
        blocked_ms = blocked.as_millis() as u64,
        stack,
        // Only with stacks: with capture off the line is as it always was.
        samples = (!reported.samples.is_empty()).then_some(reported.samples.len()),
        "blocked poll ended"
    );
}
