//! Registered threads: one fixed slot each, shared by the capturing thread and the signal
//! handler through atomics only, so the handler needs neither a lock nor an allocation.

use std::{
    cell::Cell,
    sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use crate::{handler, CaptureError, RawStack, ThreadHandle, MAX_FRAMES};

/// How many threads can be registered at once (a service has a few workers).
const MAX_THREADS: usize = 256;

/// Slot states. The capturing thread moves `IDLE → REQUESTED` and takes `DONE → IDLE`; the
/// handler moves `REQUESTED → WRITING → DONE`; a capture that gives up moves
/// `REQUESTED → IDLE`, so a late signal finds nothing to answer.
pub(crate) const IDLE: u32 = 0;
pub(crate) const REQUESTED: u32 = 1;
pub(crate) const WRITING: u32 = 2;
pub(crate) const DONE: u32 = 3;

pub(crate) struct Slot {
    /// Kernel thread id; 0 when free.
    pub tid: AtomicI32,
    /// The thread's stack: `[lo, hi)`, the guard page excluded.
    pub stack_lo: AtomicUsize,
    pub stack_hi: AtomicUsize,
    pub state: AtomicU32,
    pub len: AtomicUsize,
    pub frames: [AtomicUsize; MAX_FRAMES],
}

impl Slot {
    const fn new() -> Self {
        Self {
            tid: AtomicI32::new(0),
            stack_lo: AtomicUsize::new(0),
            stack_hi: AtomicUsize::new(0),
            state: AtomicU32::new(IDLE),
            len: AtomicUsize::new(0),
            frames: [const { AtomicUsize::new(0) }; MAX_FRAMES],
        }
    }
}

pub(crate) static SLOTS: [Slot; MAX_THREADS] = [const { Slot::new() }; MAX_THREADS];

/// The calling thread's slot, if registered; frees the slot when the thread exits.
struct Registration(Cell<Option<ThreadHandle>>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(handle) = self.0.get() {
            let slot = &SLOTS[handle.slot];
            // A capture in flight finds the tid gone and gives up.
            slot.tid.store(0, Ordering::Release);
            slot.state.store(IDLE, Ordering::Release);
        }
    }
}

thread_local! {
    static REGISTRATION: Registration = const { Registration(Cell::new(None)) };
}

pub fn register_current_thread() -> Option<ThreadHandle> {
    if !handler::installed() {
        return None;
    }
    REGISTRATION
        .try_with(|registration| {
            if let Some(handle) = registration.0.get() {
                return Some(handle);
            }
            let tid = current_tid();
            let (lo, hi) = handler::current_stack_bounds()?;
            let index = SLOTS.iter().position(|slot| {
                slot.tid
                    .compare_exchange(0, tid, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })?;
            let slot = &SLOTS[index];
            slot.stack_lo.store(lo, Ordering::Relaxed);
            slot.stack_hi.store(hi, Ordering::Relaxed);
            slot.state.store(IDLE, Ordering::Release);
            let handle = ThreadHandle { slot: index, tid };
            registration.0.set(Some(handle));
            Some(handle)
        })
        .ok()
        .flatten()
}

fn current_tid() -> i32 {
    // SAFETY: `gettid` has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

pub fn capture(thread: &ThreadHandle, timeout: Duration) -> Result<RawStack, CaptureError> {
    if !handler::installed() {
        return Err(CaptureError::NotInstalled);
    }
    let slot = &SLOTS[thread.slot];
    if slot.tid.load(Ordering::Acquire) != thread.tid {
        return Err(CaptureError::Gone);
    }
    if slot
        .state
        .compare_exchange(IDLE, REQUESTED, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return Err(CaptureError::Busy);
    }
    if !handler::signal(thread.tid) {
        slot.state.store(IDLE, Ordering::Release);
        return Err(CaptureError::Gone);
    }
    let deadline = Instant::now() + timeout;
    let mut spins = 0u32;
    loop {
        if slot.state.load(Ordering::Acquire) == DONE {
            let len = slot.len.load(Ordering::Relaxed).min(MAX_FRAMES);
            let frames = slot.frames[..len]
                .iter()
                .map(|f| f.load(Ordering::Relaxed))
                .collect();
            slot.state.store(IDLE, Ordering::Release);
            return Ok(RawStack { frames });
        }
        if slot.tid.load(Ordering::Acquire) != thread.tid {
            return Err(CaptureError::Gone);
        }
        if Instant::now() >= deadline {
            // Withdraw the request. If the handler has already claimed it, it finishes within
            // microseconds (a bounded walk): wait for that instead, so the slot ends idle.
            match slot
                .state
                .compare_exchange(REQUESTED, IDLE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Err(CaptureError::Timeout),
                Err(_) => {
                    std::thread::yield_now();
                    continue;
                }
            }
        }
        spins += 1;
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
