//! A lossless, non-blocking, batching log writer: the threads that log append each line to one
//! shared buffer under a mutex, and a background thread takes the whole buffer at once and
//! writes it to the sink (stdout, or tracing-appender's `RollingFileAppender` for the files).
//!
//! **Why not tracing-appender's `NonBlocking`.** Profiles of one request at `RUST_LOG=info`
//! showed its writer costing about 0.2 µs per line of the ~1.2 µs the request spends in
//! tracing: `buf.to_vec()` (an allocation and a free per line), a crossbeam channel send and
//! receive per line, and a `Sender` clone and drop per event (the fmt layer calls
//! `make_writer()` for every event, and `NonBlocking::make_writer` clones itself). No crate we
//! know of offers a writer that is lossless, non-blocking and cheap per line; this one costs one
//! uncontended mutex lock and a `memcpy` per line, with no allocation (the buffers keep their
//! capacity), no channel and no syscall per line:
//!
//! - the writer thread swaps the buffer for its own empty one (keeping both capacities), lets
//!   go of the lock, and writes the batch with one `write_all` and one `flush`;
//! - after a batch it lingers for [`LINGER`] before taking the next one, and only if the buffer
//!   is still empty then does it go to sleep until a line wakes it (a futex wake). Lines
//!   appended while it writes, lingers or is runnable never wake it.
//!
//! **Why the linger.** Without it the writer thread drains faster than lines arrive, so it is
//! asleep for almost every line, and every line pays a futex wake; on a busy or single CPU the
//! woken writer also preempts the logging thread to write that one line. Measured in process
//! with `benches/request.rs` pinned to one CPU (`lab/info`): about 230 000 context switches in
//! one run and twice the time per request, against about 4 000 switches (roughly one per
//! linger) with it, and a time per request no worse than tracing-appender's. The cost is
//! that a line reaches the sink up to [`LINGER`] late under load (immediately when the writer
//! was idle).
//!
//! **Whole lines.** tracing-subscriber's fmt layer formats each event into its own buffer and
//! writes it with one `write_all` on one writer; [`BatchLine::write`] appends the whole slice
//! under the lock, so lines from different threads never interleave, and each thread's lines
//! stay in its order.
//!
//! **Lossless.** The buffer is capped at `max_buffered_bytes`: a line that would take it over
//! the cap makes its thread wait until the writer thread has taken the batch (a line longer
//! than the cap is still appended to an empty buffer). Nothing is ever dropped while the
//! [`BatchGuard`] lives.
//!
//! **Shutdown.** Dropping the [`BatchGuard`] lets the writer thread write and flush everything
//! appended so far, then joins it. Lines written after that (through a [`BatchWriter`] clone
//! that outlived the guard) are discarded: nothing is left to write them. The same holds if the
//! sink panicked and took the writer thread down; no thread ever waits for a writer that is gone.
//!
//! **Errors.** The writer thread ignores the sink's write and flush errors; `telemetry` wraps
//! the sink so that the first one is reported on stderr (`ReportErrorsOnce`).

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread waits after a batch for more lines before it sleeps until woken
/// (see the module doc): it bounds how late a line reaches the sink under load, and makes the
/// writer thread wake at most about a thousand times a second however many lines are logged.
pub const LINGER: Duration = Duration::from_millis(1);

/// The state the logging threads and the writer thread share.
struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for lines (or for `closing`).
    data: Condvar,
    /// Producers over the cap wait here for the writer thread to take the batch.
    drained: Condvar,
    max_buffered_bytes: usize,
}

struct State {
    /// Lines appended since the writer thread last took the batch.
    buf: Vec<u8>,
    /// The writer thread is asleep on `data` with no deadline (or about to be): a line must
    /// wake it. (Not while it lingers: then only a waiting producer or `closing` wakes it.)
    writer_waiting: bool,
    /// Producers asleep on `drained`.
    producers_waiting: usize,
    /// The guard was dropped: the writer thread writes what is left and stops.
    closing: bool,
    /// The writer thread has stopped: lines appended now would never be written.
    stopped: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code holding the lock can panic halfway through a state change it relies on
        // (appends and swaps are whole), so a poisoned lock's state is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the writer thread if it sleeps on `data`. Clearing the flag means later lines do
    /// not wake it again before it has run.
    fn wake_writer(&self, state: &mut State) {
        if std::mem::replace(&mut state.writer_waiting, false) {
            self.data.notify_one();
        }
    }

    /// Appends `line` whole, first waiting for the writer thread to take the batch if the line
    /// would take the buffer over the cap.
    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        while !state.stopped
            && !state.buf.is_empty()
            && state.buf.len() + line.len() > self.max_buffered_bytes
        {
            // Wakes the writer thread whether it sleeps or lingers: this thread waits for it.
            state.writer_waiting = false;
            self.data.notify_one();
            state.producers_waiting += 1;
            state = self.drained.wait(state).unwrap_or_else(|p| p.into_inner());
            state.producers_waiting -= 1;
        }
        if state.stopped {
            return; // see the module doc: nothing would write it
        }
        state.buf.extend_from_slice(line);
        self.wake_writer(&mut state);
    }
}

/// The [`MakeWriter`] for tracing-subscriber's fmt layers: cheap to clone (an `Arc`), and each
/// event's writer borrows the shared state instead of cloning it.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// One event's writer: appends what it is given to the shared buffer.
pub struct BatchLine<'a> {
    shared: &'a Shared,
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        BatchLine {
            shared: &self.shared,
        }
    }
}

impl Write for BatchLine<'_> {
    /// Appends all of `buf` (never a part), so one `write_all` is one uninterrupted line.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.shared.append(buf);
        }
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    /// The writer thread flushes after every batch; nothing to do here.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the writer thread running; dropping it writes and flushes every line appended so far
/// and joins the thread.
#[must_use = "dropping the guard stops the log writer"]
pub struct BatchGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closing = true;
            // Whether it sleeps or lingers.
            state.writer_waiting = false;
            self.shared.data.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join(); // a panicking sink already said so on stderr
        }
    }
}

/// A batching writer over `sink` whose thread is named `name`; producers wait once more than
/// `max_buffered_bytes` are buffered. See the module doc.
///
/// # Panics
/// If the thread cannot be spawned.
pub fn batch_writer(
    sink: Box<dyn Write + Send>,
    name: &'static str,
    max_buffered_bytes: usize,
) -> (BatchWriter, BatchGuard) {
    let initial = max_buffered_bytes.min(64 * 1024);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: Vec::with_capacity(initial),
            writer_waiting: false,
            producers_waiting: 0,
            closing: false,
            stopped: false,
        }),
        data: Condvar::new(),
        drained: Condvar::new(),
        max_buffered_bytes,
    });
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn({
            let shared = Arc::clone(&shared);
            move || run(&shared, sink, initial)
        })
        .unwrap_or_else(|err| panic!("cannot spawn the log writer thread {name}: {err}"));
    (
        BatchWriter {
            shared: Arc::clone(&shared),
        },
        BatchGuard {
            shared,
            thread: Some(thread),
        },
    )
}

/// Marks the writer thread stopped when it ends, normally or by a panic in the sink, and wakes
/// every waiting producer so none waits for it forever.
struct StopOnExit<'a>(&'a Shared);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.stopped = true;
        state.buf = Vec::new();
        self.0.drained.notify_all();
    }
}

/// The writer thread: takes the whole buffer, writes it, flushes, lingers, until closing and
/// drained.
fn run(shared: &Shared, mut sink: Box<dyn Write + Send>, initial: usize) {
    let _stop = StopOnExit(shared);
    let mut batch = Vec::with_capacity(initial);
    let mut state = shared.lock();
    loop {
        while state.buf.is_empty() && !state.closing {
            state.writer_waiting = true;
            state = shared.data.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.writer_waiting = false;
        if state.buf.is_empty() {
            return; // closing, and everything written
        }
        std::mem::swap(&mut state.buf, &mut batch);
        if state.producers_waiting > 0 {
            shared.drained.notify_all();
        }
        drop(state);
        // Errors are reported by the sink's wrapper (`ReportErrorsOnce`); the next batch tries
        // again.
        let _ = sink.write_all(&batch);
        let _ = sink.flush();
        batch.clear();
        state = shared.lock();
        state = shared
            .data
            .wait_timeout_while(state, LINGER, |s| !s.closing && s.producers_waiting == 0)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A sink that records every byte, shared with the test.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<u8>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const THREADS: usize = 4;
    const PER_THREAD: usize = 25_000;

    /// `THREADS` threads each write `PER_THREAD` lines `"<thread> <seq> <padding>\n"` through
    /// the `MakeWriter` with one `write_all` each, as the fmt layer does; returns the bytes the
    /// sink got once the guard has been dropped.
    fn burst(max_buffered_bytes: usize) -> Vec<u8> {
        let recorder = Recorder::default();
        let (writer, guard) = batch_writer(
            Box::new(recorder.clone()),
            "test-writer",
            max_buffered_bytes,
        );
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let writer = writer.clone();
                scope.spawn(move || {
                    for seq in 0..PER_THREAD {
                        let line = format!("{thread} {seq} {}\n", "x".repeat(seq % 97));
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let bytes = recorder.0.lock().unwrap().clone();
        bytes
    }

    /// Every line present, whole, and in order per thread.
    fn assert_complete_and_ordered(bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.ends_with('\n'), "a partial last line");
        let mut seqs: HashMap<usize, Vec<usize>> = HashMap::new();
        for line in text.lines() {
            let mut parts = line.split(' ');
            let thread: usize = parts.next().unwrap().parse().unwrap();
            let seq: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(parts.next(), Some("x".repeat(seq % 97).as_str()), "{line}");
            assert_eq!(parts.next(), None, "interleaved: {line}");
            seqs.entry(thread).or_default().push(seq);
        }
        let expected: Vec<usize> = (0..PER_THREAD).collect();
        for thread in 0..THREADS {
            assert!(
                seqs[&thread] == expected,
                "thread {thread}: lines missing or out of order"
            );
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_per_thread() {
        assert_complete_and_ordered(&burst(8 << 20));
    }

    #[test]
    fn a_tiny_cap_makes_producers_wait_instead_of_dropping() {
        assert_complete_and_ordered(&burst(1024));
    }

    #[test]
    fn a_line_longer_than_the_cap_is_written_whole() {
        let recorder = Recorder::default();
        let (writer, guard) = batch_writer(Box::new(recorder.clone()), "test-writer", 16);
        let long = format!("{}\n", "y".repeat(1000));
        for _ in 0..3 {
            writer.make_writer().write_all(long.as_bytes()).unwrap();
        }
        drop(guard);
        assert_eq!(*recorder.0.lock().unwrap(), long.repeat(3).into_bytes());
    }

    #[test]
    fn lines_from_the_fmt_layer_are_whole_json_lines() {
        use tracing_subscriber::layer::SubscriberExt;

        let recorder = Recorder::default();
        let (writer, guard) = batch_writer(Box::new(recorder.clone()), "test-writer", 1024);
        let layer = tracing_subscriber::fmt::layer().json().with_writer(writer);
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        std::thread::scope(|scope| {
            for thread in 0..THREADS as u64 {
                let dispatch = dispatch.clone();
                scope.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for seq in 0..2_000u64 {
                            tracing::info!(thread, seq, "burst");
                        }
                    })
                });
            }
        });
        drop(dispatch);
        drop(guard);
        let bytes = recorder.0.lock().unwrap().clone();
        let mut next = [0u64; THREADS];
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let json: serde_json::Value = serde_json::from_slice(line).unwrap();
            let thread = json["fields"]["thread"].as_u64().unwrap() as usize;
            assert_eq!(json["fields"]["seq"].as_u64().unwrap(), next[thread]);
            next[thread] += 1;
        }
        assert_eq!(next, [2_000; THREADS]);
    }

    #[test]
    fn lines_after_the_guard_are_discarded_without_waiting() {
        let recorder = Recorder::default();
        let (writer, guard) = batch_writer(Box::new(recorder.clone()), "test-writer", 8);
        writer.make_writer().write_all(b"before\n").unwrap();
        drop(guard);
        for _ in 0..10 {
            writer
                .make_writer()
                .write_all(b"after the guard\n")
                .unwrap();
        }
        assert_eq!(*recorder.0.lock().unwrap(), b"before\n");
    }
}
