//! A burst of 100 000 events through the service's JSON layer and its lossless batching writer.
//!
//! This runs in the test process, not through the binary: the property belongs to the layer
//! and the writer, and in-process each event carries its thread and sequence number, so
//! "every line, in order per thread" is checked exactly. The JSON layer is the service's own
//! (`service::telemetry::json_layer`); the writer is the one `telemetry::init` installs
//! (`service::telemetry::lossless_writer`, a `batch_writer` with the service's buffer cap),
//! writing to a file, and the same batching writer with a cap far smaller than the burst.

use std::{io::Write, path::Path};

use service::telemetry::{
    batch_writer::{batch_writer, BatchGuard, BatchWriter},
    json_layer, lossless_writer,
};
use tracing_subscriber::layer::SubscriberExt;

use crate::process::complete_lines;

const THREADS: u64 = 4;
const PER_THREAD: u64 = 25_000;
const EVENTS: u64 = THREADS * PER_THREAD;

/// Emits [`EVENTS`] events from [`THREADS`] threads as fast as they go through `writer`, then
/// drops the subscriber and the writer's guard (which writes and flushes every buffered line).
fn burst(writer: BatchWriter, guard: BatchGuard) {
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
    drop(guard);
}

fn file_sink(file: &Path) -> Box<dyn Write + Send> {
    Box::new(std::fs::File::create(file).unwrap())
}

/// Per thread, the sequence numbers found in `file`, in file order; every line must be whole
/// JSON.
fn sequences(file: &Path) -> Vec<Vec<u64>> {
    let bytes = std::fs::read(file).unwrap();
    assert!(bytes.ends_with(b"\n"), "the output ends in a partial line");
    let mut seqs = vec![Vec::new(); THREADS as usize];
    for line in complete_lines(&bytes) {
        let json: serde_json::Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(line)));
        let fields = &json["fields"];
        seqs[fields["thread"].as_u64().unwrap() as usize].push(fields["seq"].as_u64().unwrap());
    }
    seqs
}

fn assert_complete_and_ordered(file: &Path) {
    let seqs = sequences(file);
    let total: usize = seqs.iter().map(Vec::len).sum();
    assert_eq!(total as u64, EVENTS, "lines written for {EVENTS} events");
    let expected: Vec<u64> = (0..PER_THREAD).collect();
    for (thread, got) in seqs.iter().enumerate() {
        assert!(
            *got == expected,
            "thread {thread}: lines missing or out of order"
        );
    }
}

#[test]
fn a_burst_of_100_000_events_is_written_completely_and_in_order_per_thread() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.jsonl");
    let (writer, guard) = lossless_writer(file_sink(&file), "burst-writer");
    burst(writer, guard);
    assert_complete_and_ordered(&file);
}

/// The same burst through a buffer far smaller than the burst (a few lines): the emitting
/// threads wait for the writer thread instead of dropping, so nothing is lost either.
#[test]
fn a_burst_through_a_full_buffer_waits_instead_of_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.jsonl");
    let (writer, guard) = batch_writer(file_sink(&file), "burst-writer", 1024);
    burst(writer, guard);
    assert_complete_and_ordered(&file);
}
