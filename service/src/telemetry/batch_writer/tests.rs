//! Whole lines, all of them, in order per thread; written within a tick; a batch per write.

use std::{
    io::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::BatchWriter;

/// A sink that keeps each `write` call's bytes apart.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

impl std::io::Write for Calls {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Calls {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().concat()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[test]
fn lines_from_many_threads_through_a_small_buffer_arrive_whole_and_in_order() {
    const THREADS: usize = 4;
    const LINES: usize = 20_000;
    let sink = Calls::default();
    let (writer, guard) = BatchWriter::with_capacity(sink.clone(), "test-writer", 1024);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let writer = &writer;
            scope.spawn(move || {
                for seq in 0..LINES {
                    let line = format!("{thread} {seq}\n");
                    (&*writer).write_all(line.as_bytes()).unwrap();
                }
            });
        }
    });
    drop(guard);
    let text = String::from_utf8(sink.bytes()).unwrap();
    let mut next = [0; THREADS];
    for line in text.lines() {
        let (thread, seq) = line.split_once(' ').unwrap();
        let thread: usize = thread.parse().unwrap();
        assert_eq!(
            seq.parse::<usize>().unwrap(),
            next[thread],
            "thread {thread}"
        );
        next[thread] += 1;
    }
    assert_eq!(next, [LINES; THREADS]);
}

#[test]
fn a_line_is_written_without_waiting_for_the_guard() {
    let sink = Calls::default();
    let (writer, _guard) = BatchWriter::new(sink.clone(), "test-writer");
    // Twice: the second line comes after the writer thread has gone back to sleep.
    for line in ["one\n", "two\n"] {
        (&writer).write_all(line.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sink.bytes().ends_with(line.as_bytes()) {
            assert!(Instant::now() < deadline, "{line:?} was not written");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(super::FLUSH_EVERY * 4);
    }
    assert_eq!(sink.bytes(), b"one\ntwo\n");
}

#[test]
fn lines_written_together_go_out_in_few_writes() {
    let sink = Calls::default();
    let (writer, guard) = BatchWriter::new(sink.clone(), "test-writer");
    for seq in 0..1000 {
        (&writer)
            .write_all(format!("line {seq}\n").as_bytes())
            .unwrap();
    }
    drop(guard);
    assert_eq!(
        String::from_utf8(sink.bytes()).unwrap().lines().count(),
        1000
    );
    // One write per line would be 1000; a batch per wake-up is a handful.
    assert!(
        sink.count() <= 100,
        "{} writes for 1000 lines",
        sink.count()
    );
}

#[test]
fn a_line_longer_than_the_buffer_still_goes_through() {
    let sink = Calls::default();
    let (writer, guard) = BatchWriter::with_capacity(sink.clone(), "test-writer", 16);
    let long = format!("{}\n", "x".repeat(100));
    for _ in 0..3 {
        (&writer).write_all(long.as_bytes()).unwrap();
    }
    drop(guard);
    assert_eq!(sink.bytes(), long.repeat(3).as_bytes());
}

/// A sink whose first write panics, as a broken custom sink might.
struct Panics;

impl std::io::Write for Panics {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        panic!("the sink broke (expected by the test)");
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_writer_thread_that_died_leaves_no_logging_thread_waiting() {
    let (writer, guard) = BatchWriter::with_capacity(Panics, "test-writer", 64);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Far more than the buffer holds: with the writer gone, nobody would make room.
        for seq in 0..1000 {
            (&writer)
                .write_all(format!("line {seq}\n").as_bytes())
                .unwrap();
        }
        done.send(()).unwrap();
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(20)).is_ok(),
        "a logging thread still waits for a writer that is gone"
    );
    drop(guard);
}
