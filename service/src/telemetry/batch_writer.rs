//! The log writer: lossless and non-blocking, lines gathered into batches that a thread of its
//! own writes.
//!
//! **Why its own** instead of tracing-appender's `NonBlocking` (the lab's writer until issue
//! 20; its rolling files are still tracing-appender's): `NonBlocking` gives each line a `Vec`
//! of its own, sends it through a channel and wakes its thread for it, which cost more
//! instructions than building the line (`docs/benchmarks.md`, issue 20). Here a line is copied
//! into a shared buffer under a lock, and the writer thread wakes once per batch: every
//! [`FLUSH_EVERY`] while lines keep coming, at once when a batch reaches [`WAKE_AT`], and on
//! the first line after a quiet spell. Nothing is dropped: when the buffer holds [`CAPACITY`]
//! bytes, the logging thread waits for the writer, as tracing-appender's `lossy(false)` does.

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

/// The longest a line waits in the buffer while lines keep coming.
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);

/// A batch this large is written at once, without waiting for the tick.
pub const WAKE_AT: usize = 64 * 1024;

/// The most bytes buffered before logging threads wait for the writer (about 10,000 access
/// lines).
pub const CAPACITY: usize = 4 * 1024 * 1024;

/// Writes whole lines (one `write` call each) to the sink of its [`BatchWriterGuard`].
#[derive(Debug, Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Owns the writer thread; dropping it writes every buffered line and stops the thread.
#[derive(Debug)]
#[must_use = "dropping the guard stops the writer"]
pub struct BatchWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for lines.
    lines_ready: Condvar,
    /// Logging threads wait here when the buffer is full.
    room: Condvar,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    lines: Vec<u8>,
    /// The writer thread found nothing on its last tick and sleeps until a line wakes it.
    asleep: bool,
    /// Logging threads waiting for room.
    waiting: usize,
    stopping: bool,
    /// The writer thread has ended: lines from now on cannot be written and are not kept.
    gone: bool,
}

impl BatchWriter {
    /// A writer to `sink` with its thread, named `name`, buffering up to [`CAPACITY`] bytes.
    pub fn new(sink: impl Write + Send + 'static, name: &str) -> (Self, BatchWriterGuard) {
        Self::with_capacity(sink, name, CAPACITY)
    }

    /// The same with another bound (a line longer than `capacity` still goes through, alone).
    pub fn with_capacity(
        sink: impl Write + Send + 'static,
        name: &str,
        capacity: usize,
    ) -> (Self, BatchWriterGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            lines_ready: Condvar::new(),
            room: Condvar::new(),
            capacity,
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || shared.write_batches(sink))
                .expect("the log writer thread starts")
        };
        let guard = BatchWriterGuard {
            shared: shared.clone(),
            thread: Some(thread),
        };
        (Self { shared }, guard)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across code that can panic but allocation, which aborts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one line, waiting while the buffer is full; wakes the writer thread only when
    /// it sleeps, the batch is large, or the buffer is full.
    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.gone {
            return;
        }
        // Once stopping, the writer thread no longer makes room: nobody waits for it.
        while !state.lines.is_empty()
            && state.lines.len() + line.len() > self.capacity
            && !state.stopping
        {
            state.waiting += 1;
            state.asleep = false;
            self.lines_ready.notify_one();
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
            if state.gone {
                return;
            }
        }
        state.lines.extend_from_slice(line);
        if state.asleep || state.lines.len() >= WAKE_AT {
            state.asleep = false;
            // Woken after the lock is released, so the writer thread does not wake only to
            // wait for it. No wake-up is lost: the writer checks `asleep` under the lock.
            drop(state);
            self.lines_ready.notify_one();
        }
    }

    /// The writer thread: one batch per wake-up, until stopped and drained.
    fn write_batches(&self, mut sink: impl Write) {
        let _gone = Gone(self);
        let mut batch = Vec::new();
        let mut state = self.lock();
        loop {
            if state.lines.is_empty() {
                if state.stopping {
                    return;
                }
                state.asleep = true;
                state = self
                    .lines_ready
                    .wait_while(state, |s| s.asleep && !s.stopping)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Let the lines of one tick gather (the first after a quiet spell included).
            state = self
                .lines_ready
                .wait_timeout_while(state, FLUSH_EVERY, |s| {
                    s.lines.len() < WAKE_AT && s.waiting == 0 && !s.stopping
                })
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            std::mem::swap(&mut state.lines, &mut batch);
            if state.waiting > 0 {
                self.room.notify_all();
            }
            drop(state);
            // Errors are the sink's to report (`telemetry::ReportErrorsOnce`); the lines after
            // a failed write are still tried.
            let _ = sink.write_all(&batch).and_then(|()| sink.flush());
            batch.clear();
            state = self.lock();
        }
    }
}

/// Marks the writer thread gone however it ends (a sink that panics included), so that no
/// logging thread waits for room it would never make, nor fills memory with lines nobody
/// will write (as with tracing-appender, lines after the guard has dropped are lost).
struct Gone<'a>(&'a Shared);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.stopping = true;
        state.gone = true;
        state.lines = Vec::new();
        drop(state);
        self.0.room.notify_all();
    }
}

impl io::Write for &BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.shared.append(line);
        Ok(line.len())
    }

    /// Lines reach the sink within [`FLUSH_EVERY`]; the guard writes the rest when dropped.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = &'a BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for BatchWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.lines_ready.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
