//! A burst of 100 000 events through the service's JSON layer and a non-blocking writer.
//!
//! This runs in the test process, not through the binary: the property belongs to the layer
//! and the writer, and in-process each event carries its thread and sequence number, so
//! "every line, in order per thread" is checked exactly. The JSON layer is the service's own
//! (`service::telemetry::json_layer`); the writer is the one `telemetry::init` builds
//! (`telemetry::lossless_writer`, the lab's batching writer), and, for the record,
//! tracing-appender's non-blocking writer in both its modes, writing to a file.

use std::{collections::HashMap, path::Path};

use service::telemetry::{batch_writer::BatchWriter, json_layer, lossless_writer};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder};
use tracing_subscriber::{fmt::MakeWriter, layer::SubscriberExt};

use crate::process::complete_lines;

const THREADS: u64 = 4;
const PER_THREAD: u64 = 25_000;
const EVENTS: u64 = THREADS * PER_THREAD;

/// Emits [`EVENTS`] events from [`THREADS`] threads as fast as they go through `builder`'s
/// writer into `file`, drops the subscriber and the writer's guard (which flushes), and
/// returns the writer's error counter.
fn burst(builder: NonBlockingBuilder, file: &Path) -> ErrorCounter {
    let (writer, guard) = builder.finish(std::fs::File::create(file).unwrap());
    let dropped = writer.error_counter();
    emit(writer);
    drop(guard);
    dropped
}

/// Emits the burst through `writer` and drops the subscriber; the caller drops the guard.
fn emit<W: for<'w> MakeWriter<'w> + Send + Sync + 'static>(writer: W) {
    let subscriber = tracing_subscriber::registry().with(json_layer(writer, "info").unwrap());
    let dispatch = tracing::Dispatch::new(subscriber);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let dispatch = dispatch.clone();
            scope.spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for seq in 0..PER_THREAD {
                        tracing::info!(thread, seq, "burst");
                    }
                })
            });
        }
    });
    drop(dispatch);
}

/// Per thread, the sequence numbers found in `file`, in file order.
fn sequences(file: &Path) -> HashMap<u64, Vec<u64>> {
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes.ends_with(b"\n"), "the output ends in a partial line");
    let mut seqs: HashMap<u64, Vec<u64>> = HashMap::new();
    for line in complete_lines(&bytes) {
        let json: serde_json::Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(line)));
        let fields = &json["fields"];
        seqs.entry(fields["thread"].as_u64().unwrap())
            .or_default()
            .push(fields["seq"].as_u64().unwrap());
    }
    seqs
}

fn assert_complete_and_ordered(file: &Path) {
    let seqs = sequences(file);
    let total: usize = seqs.values().map(Vec::len).sum();
    assert_eq!(total as u64, EVENTS, "lines written for {EVENTS} events");
    for thread in 0..THREADS {
        let got = &seqs[&thread];
        let expected: Vec<u64> = (0..PER_THREAD).collect();
        assert!(
            *got == expected,
            "thread {thread}: lines missing or out of order"
        );
    }
}

#[test]
fn a_burst_through_the_services_writer_is_written_completely_and_in_order_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.jsonl");
    let (writer, guard) = lossless_writer(Box::new(std::fs::File::create(&file).unwrap()), "burst");
    emit(writer);
    drop(guard);
    assert_complete_and_ordered(&file);
}

/// The same through a buffer far smaller than the burst (4 KiB, a few lines): the emitting
/// threads wait for the writer instead of dropping, so nothing is lost either.
#[test]
fn a_burst_through_the_services_writer_with_a_full_buffer_waits_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.jsonl");
    let sink = std::fs::File::create(&file).unwrap();
    let (writer, guard) = BatchWriter::with_capacity(sink, "burst", 4096);
    emit(writer);
    drop(guard);
    assert_complete_and_ordered(&file);
}

#[test]
fn a_burst_of_100_000_events_is_written_completely_and_in_order_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.jsonl");
    let dropped = burst(NonBlockingBuilder::default().lossy(false), &file);
    assert_eq!(dropped.dropped_lines(), 0);
    assert_complete_and_ordered(&file);
}

/// The same burst through a queue far smaller than the burst: the lossless writer makes the
/// emitting threads wait instead of dropping, so nothing is lost either.
#[test]
fn a_burst_through_a_full_queue_waits_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.jsonl");
    let builder = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(256);
    let dropped = burst(builder, &file);
    assert_eq!(dropped.dropped_lines(), 0);
    assert_complete_and_ordered(&file);
}

/// The lossy mode the service does not use, for the record: whatever it drops, its counter
/// says exactly how many, and what it keeps is still in order per thread.
#[test]
fn the_lossy_writer_counts_exactly_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.jsonl");
    let builder = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(256);
    let dropped = burst(builder, &file);
    let seqs = sequences(&file);
    let written: u64 = seqs.values().map(|s| s.len() as u64).sum();
    assert_eq!(
        written + dropped.dropped_lines() as u64,
        EVENTS,
        "written {written} + dropped {} != emitted",
        dropped.dropped_lines()
    );
    for (thread, seq) in &seqs {
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "thread {thread}: lines out of order"
        );
    }
}
