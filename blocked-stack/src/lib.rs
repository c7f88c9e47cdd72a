//! The stack of another thread of this process, taken while that thread is blocked.
//!
//! The watchdog knows *that* a worker is stuck; this crate says *where*. The checker thread
//! sends a real-time signal to the stuck thread alone (`tgkill`), and the handler, running on
//! that thread, walks its frame pointers from the interrupted registers into a buffer set
//! aside for it when the thread registered. The handler takes no lock, allocates nothing and
//! calls no unwinder library: it only loads words from its own thread's stack, each load
//! bounds-checked against that stack, and it saves and restores `errno`. A signal that arrives
//! late (after the checker gave up) or for a thread that asked for nothing is a no-op.
//!
//! **Why this crate exists.** Every crate that samples another thread's stack either unwinds in
//! the handler with a library that takes locks and allocates (`backtrace`'s
//! `trace_unsynchronized`, libgcc's `_Unwind_Backtrace`: the source of pprof-rs's and others'
//! crashes), stops the whole process with ptrace (`rstack`, minidumps), or samples every thread
//! on a timer (pprof-rs's frame-pointer mode). None asks one chosen thread, once, for its stack
//! and hands it back to the caller; this crate does only that.
//!
//! Requirements: Linux on x86_64 or aarch64, and code built with frame pointers (the workspace
//! sets `-C force-frame-pointers=yes`; Rust's shipped std has them). Frameless code (glibc's
//! system-call wrappers) is bridged once: when the interrupted instruction lies outside the
//! main executable, the nearest word above the stack pointer that points into the executable's
//! code is taken as the return address into it. Elsewhere a missing frame pointer only makes
//! the stack short. [`self_test`] tells at start-up whether the walk works in this build.
//!
//! Unsupported targets compile to an implementation whose [`install`] fails with
//! [`Unavailable::Unsupported`].

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod handler;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod objects;
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod threads;

use std::{fmt, time::Duration};

/// The most frames one capture records (the interrupted instruction first).
pub const MAX_FRAMES: usize = 64;

/// Why capture cannot be used in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Not Linux on x86_64 or aarch64.
    Unsupported,
    /// The chosen signal already has a handler that is not ours.
    SignalInUse(i32),
    /// `sigaction` failed.
    Sigaction(String),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Unsupported => write!(f, "stack capture needs Linux on x86_64 or aarch64"),
            Unavailable::SignalInUse(sig) => {
                write!(f, "signal {sig} already has a handler in this process")
            }
            Unavailable::Sigaction(err) => write!(f, "cannot install the signal handler: {err}"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Why one capture returned no frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    /// [`install`] has not succeeded.
    NotInstalled,
    /// The thread has exited or unregistered.
    Gone,
    /// A capture of this thread is already in progress.
    Busy,
    /// The thread did not run its handler in time (for example: in uninterruptible disk wait).
    Timeout,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaptureError::NotInstalled => "stack capture is not installed",
            CaptureError::Gone => "the thread has exited",
            CaptureError::Busy => "a capture of this thread is in progress",
            CaptureError::Timeout => "the thread did not answer in time",
        })
    }
}

impl std::error::Error for CaptureError {}

/// A thread that may be captured; from [`register_current_thread`], usable from any thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadHandle {
    slot: usize,
    tid: i32,
}

impl ThreadHandle {
    /// The kernel's id of the thread.
    pub fn tid(&self) -> i32 {
        self.tid
    }
}

/// One captured stack: the interrupted instruction, then return addresses, innermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStack {
    pub frames: Vec<usize>,
}

/// An object (executable or shared library) mapped when [`install`] ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its file name, without the directory (`service`, `libc.so.6`).
    pub name: String,
    /// Load bias: a run-time address minus this is the address in the file (for `addr2line`).
    pub bias: usize,
    /// The GNU build id, hex, when the object has one.
    pub build_id: Option<String>,
    /// Whether it is the main executable.
    pub main: bool,
    ranges: Vec<(usize, usize)>,
}

impl Module {
    /// Whether `addr` lies in one of its executable segments.
    pub fn contains(&self, addr: usize) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= addr && addr < hi)
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    pub use crate::handler::install;
    pub use crate::objects::modules;
    pub use crate::threads::{capture, register_current_thread};
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    use super::*;

    pub fn install() -> Result<(), Unavailable> {
        Err(Unavailable::Unsupported)
    }
    pub fn modules() -> &'static [Module] {
        &[]
    }
    pub fn register_current_thread() -> Option<ThreadHandle> {
        None
    }
    pub fn capture(_: &ThreadHandle, _: Duration) -> Result<RawStack, CaptureError> {
        Err(CaptureError::NotInstalled)
    }
}

/// Installs the signal handler (once per process; later calls return the first result).
/// Records the mapped objects' code ranges and build ids first, for the handler and for
/// [`modules`].
pub fn install() -> Result<(), Unavailable> {
    imp::install()
}

/// The objects mapped when [`install`] ran; empty before.
pub fn modules() -> &'static [Module] {
    imp::modules()
}

/// Registers the calling thread for capture, once (later calls return the same handle); it is
/// unregistered when the thread exits. `None` before [`install`], or when every slot is taken.
pub fn register_current_thread() -> Option<ThreadHandle> {
    imp::register_current_thread()
}

/// Asks `thread` for its stack and waits up to `timeout` for the answer. Call it from another
/// thread: a thread cannot be asked while it waits for itself.
pub fn capture(thread: &ThreadHandle, timeout: Duration) -> Result<RawStack, CaptureError> {
    imp::capture(thread, timeout)
}

/// The functions [`self_test`]'s stack must name, innermost first, once symbolized.
pub const SELF_TEST_FRAMES: [&str; 2] = [
    "blocked_stack::self_test_inner",
    "blocked_stack::self_test_outer",
];

/// Captures a known call chain (a helper thread parked in a futex wait inside
/// `self_test_inner`, called from `self_test_outer`). The caller symbolizes it and checks that
/// both [`SELF_TEST_FRAMES`] are there: a build without frame pointers, or a walk that does not
/// work on this platform, loses them. Errors when capture is unavailable or times out.
pub fn self_test() -> Result<RawStack, CaptureError> {
    use std::sync::mpsc;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let helper = std::thread::Builder::new()
        .name("stack-self-test".into())
        .spawn(move || self_test_outer(ready_tx, release_rx))
        .map_err(|_| CaptureError::Gone)?;
    let handle = ready_rx.recv().map_err(|_| CaptureError::Gone)?;
    // Give the helper time to park in `recv`; a capture before that would miss the inner frame.
    std::thread::sleep(Duration::from_millis(20));
    let result = match handle {
        Some(handle) => capture(&handle, Duration::from_millis(500)),
        None => Err(CaptureError::NotInstalled),
    };
    let _ = release_tx.send(());
    let _ = helper.join();
    result
}

#[inline(never)]
fn self_test_outer(
    ready: std::sync::mpsc::Sender<Option<ThreadHandle>>,
    release: std::sync::mpsc::Receiver<()>,
) {
    let _ = ready.send(register_current_thread());
    self_test_inner(release);
    std::hint::black_box(());
}

#[inline(never)]
fn self_test_inner(release: std::sync::mpsc::Receiver<()>) {
    // Parked in a futex wait (a frameless libc call), like a worker blocked in a lock.
    let _ = std::hint::black_box(release.recv());
}
