//! Per worker thread: what is being polled and since when, the heartbeat's next due time, and
//! the thread's handle for stack capture. Shared with the checker thread; the hot path (every
//! span enter and exit, every request poll) takes one uncontended lock.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, OnceLock, Weak,
    },
    time::{Duration, Instant},
};

use tracing::Id;

use super::stacks::Stack;
use crate::request_id::RequestId;

/// The request being polled, as the request middleware reports it.
#[derive(Debug)]
pub(super) struct RequestFrame {
    pub id: RequestId,
    /// Its root span, when some layer wanted one (the warnings become its children).
    pub span: Option<Id>,
}

/// What the checker reported about the current poll, once it ran past the threshold.
#[derive(Debug)]
pub(super) struct Reported {
    pub handler: &'static str,
    pub request_id: Option<Arc<str>>,
    /// Its entry in the record of recent blocks, if kept.
    pub record: Option<u64>,
    /// Stack samples tried so far (at 1×, 2× and 4× the threshold), and those that came back.
    pub attempts: usize,
    pub samples: Vec<Stack>,
}

/// What one thread is polling right now.
#[derive(Debug, Default)]
pub(super) struct PollState {
    pub request: Option<RequestFrame>,
    /// Entered spans, outermost first. Empty between polls.
    pub stack: Vec<Id>,
    /// When the request or the outermost span was entered: the start of the poll.
    pub started: Option<Instant>,
    /// Counts polls, so the checker can tell that the poll it looked at is still the same.
    pub generation: u64,
    pub reported: Option<Reported>,
}

impl PollState {
    /// Between polls: no request and no span is being polled.
    pub fn is_idle(&self) -> bool {
        self.stack.is_empty() && self.request.is_none()
    }

    /// A poll starts when the request or a span is entered on an idle thread.
    pub fn begin_poll_if_idle(&mut self) {
        if self.is_idle() {
            self.started = Some(Instant::now());
            self.generation = self.generation.wrapping_add(1);
            self.reported = None;
        }
    }

    /// Ends the poll; how long it ran and what was reported, if the checker warned about it.
    pub fn poll_ended(&mut self) -> Option<(Duration, Reported)> {
        let started = self.started.take()?;
        let reported = self.reported.take()?;
        Some((started.elapsed(), reported))
    }
}

/// A stack the checker took while the heartbeat was overdue, for the `worker stall` line.
#[derive(Debug)]
pub(super) struct StallSample {
    /// The heartbeat due time it belongs to (see [`Slot::heartbeat_due`]).
    pub due: u64,
    pub stack: Stack,
}

/// One thread's state.
#[derive(Debug)]
pub(super) struct Slot {
    pub thread: String,
    pub capture: Option<blocked_stack::ThreadHandle>,
    pub state: Mutex<PollState>,
    /// When the heartbeat should wake next, in nanoseconds since [`epoch`]; 0 = no heartbeat.
    pub heartbeat_due: AtomicU64,
    /// The due time the checker last sampled a stall for.
    pub stall_sampled: AtomicU64,
    pub stall_sample: Mutex<Option<StallSample>>,
}

impl Slot {
    pub fn state(&self) -> MutexGuard<'_, PollState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

static SLOTS: Mutex<Vec<Weak<Slot>>> = Mutex::new(Vec::new());

thread_local! {
    static SLOT: Arc<Slot> = {
        let thread = std::thread::current();
        let slot = Arc::new(Slot {
            thread: thread.name().map_or_else(|| format!("{:?}", thread.id()), str::to_owned),
            capture: blocked_stack::register_current_thread(),
            state: Mutex::new(PollState::default()),
            heartbeat_due: AtomicU64::new(0),
            stall_sampled: AtomicU64::new(0),
            stall_sample: Mutex::new(None),
        });
        let mut slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        slot
    };
}

/// Runs `f` with the calling thread's slot (created, and registered for capture, on first use).
pub(super) fn with_current<R>(f: impl FnOnce(&Slot) -> R) -> R {
    SLOT.with(|slot| f(slot))
}

/// Every live thread's slot.
pub(super) fn all() -> Vec<Arc<Slot>> {
    let slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
    slots.iter().filter_map(Weak::upgrade).collect()
}

/// The instant the heartbeat's due times count from.
pub(super) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from [`epoch`] to `at` (at least 1, so 0 can mean "none").
pub(super) fn since_epoch(at: Instant) -> u64 {
    (at.saturating_duration_since(epoch()).as_nanos() as u64).max(1)
}

/// Stores `due` as the calling thread's next heartbeat; returns it as stored, the mark the
/// checker's stall sample for this tick carries.
pub(super) fn set_heartbeat_due(due: Instant) -> u64 {
    let mark = since_epoch(due);
    with_current(|slot| slot.heartbeat_due.store(mark, Ordering::Release));
    mark
}
