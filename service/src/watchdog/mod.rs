//! The blocking watchdog: names a blocked worker in the logs of every build, while it blocks,
//! with the stack of the code that blocks it.
//!
//! **What exists, and why it is not enough here.** `tokio-blocked` warns about long polls of
//! tokio's `runtime.spawn` spans, which exist only with `tokio_unstable` plus tokio's `tracing`
//! feature (the canary), and only *after* the poll returns. `tokio-metrics`' `TaskMonitor`
//! counts slow polls of futures it wraps, in aggregate and after the fact, without a request
//! id. tokio's own poll hooks and worker metrics cannot be installed on actix-server's worker
//! runtimes (their tasks run in a `LocalSet`, and worker metrics are only submitted when a
//! worker parks, i.e. never during the block). None of them can say "this request is blocking
//! worker 2 right now, in this function", so this module does:
//!
//! - `threads`: per thread, what is being polled and since when — the request (reported by
//!   the request middleware through [`poll_request`], in `poll`) and the spans entered inside
//!   it (recorded by [`WatchdogLayer`], in `layer`).
//! - `checker`: a thread that looks every few milliseconds; once a poll has run longer than
//!   `LONG_POLL_MS` it emits one WARN `worker blocked` naming the innermost span (`handler`),
//!   the `request_id`, the thread, the time so far and the blocked code's `stack` (`stacks`,
//!   captured by the `blocked-stack` crate while the worker blocks), as a child of that span so
//!   the line is found under the request id. When the poll ends, one WARN `blocked poll ended`
//!   follows with the total and the frames all samples shared.
//! - `heartbeat`: a tiny task per worker runtime; when it wakes late by more than the
//!   threshold with no watched poll, WARN `worker stall` (blocking code outside any request).
//! - [`record`]: a bounded record of recent blocks and stalls, served at `GET /debug/blocked`.
//!
//! The per-poll cost is two uncontended mutex operations; names, request ids and stacks are
//! looked up only for a poll that has already run past the threshold (`docs/benchmarks.md`).
//! The layer ignores the request's root span: the middleware reports the request itself, so with
//! `RUST_LOG=off` no layer wants the root span and tracing does not build it at all.

use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::{registry::LookupSpan, Layer};

mod checker;
mod heartbeat;
mod layer;
mod poll;
pub mod record;
mod stacks;
mod threads;

pub use heartbeat::spawn_heartbeat;
pub use layer::WatchdogLayer;
pub use poll::{poll_request, PollGuard};

/// How the watchdog runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A poll longer than this is reported; zero turns the watchdog off.
    pub threshold: Duration,
    /// The name of every request's root span (ignored by the layer: the middleware reports the
    /// request directly), and what a blocked request with no handler span is called.
    pub root_span: &'static str,
    /// Whether `worker blocked` and `worker stall` lines carry the blocked code's stack.
    pub capture_stacks: bool,
    /// Whether recent blocks are kept for `GET /debug/blocked`.
    pub keep_record: bool,
}

/// Starts the watchdog's checker thread and returns its layer, which follows spans at INFO or
/// above; `None` when the threshold is zero (the watchdog is off).
pub fn layer<S>(options: Options) -> Option<impl Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if options.threshold.is_zero() {
        return None;
    }
    if options.keep_record {
        record::enable();
    }
    checker::Checker {
        threshold: options.threshold,
        root_span: options.root_span,
    }
    .spawn(options.capture_stacks);
    poll::enable();
    Some(WatchdogLayer::new(options.root_span))
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use actix_web::http::header::HeaderValue;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::{
        request_id::RequestId,
        telemetry::{json_layer, BoxedLayer},
    };

    /// Log lines captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A request with no span of its own (the root span disabled, as with `RUST_LOG=off` for
    /// the output) that blocks its thread: the middleware's report alone names it.
    #[test]
    fn a_blocked_request_without_spans_is_named_by_its_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let layers: Vec<BoxedLayer> = vec![
            layer(Options {
                threshold: Duration::from_millis(20),
                root_span: "request",
                capture_stacks: true,
                keep_record: true,
            })
            .expect("the watchdog is on")
            .boxed(),
            json_layer(move || writer.clone(), "warn").unwrap(),
        ];
        // The checker thread logs through the global subscriber.
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layers))
            .unwrap();

        // Capture turns on once its start-up self-test has passed, on a thread of its own.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !stacks::is_on() {
            assert!(
                std::time::Instant::now() < deadline,
                "capture never turned on"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let id = RequestId::from_client(&HeaderValue::from_static("frame-1")).unwrap();
        let root = tracing::Span::none();
        {
            let _polling = poll_request(&id, &root);
            std::thread::sleep(Duration::from_millis(150));
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let find = |message: &str| {
            lines
                .iter()
                .find(|l| l["fields"]["message"] == message)
                .unwrap_or_else(|| panic!("no {message:?} line in {text}"))
        };
        let blocked = find("worker blocked");
        assert_eq!(blocked["fields"]["handler"], "request", "{blocked}");
        assert_eq!(blocked["fields"]["request_id"], "frame-1", "{blocked}");
        // The stack was taken while the thread slept, from this test's own frames.
        let stack = blocked["fields"]["stack"].as_str().unwrap_or_default();
        assert!(stack.contains("sleep"), "{blocked}");
        assert!(
            stack.contains("a_blocked_request_without_spans"),
            "{blocked}"
        );
        let entry = record::recent(None)
            .into_iter()
            .find(|e| e.request_id.as_deref() == Some("frame-1"))
            .expect("the block is recorded");
        assert!(entry.end.is_some() && entry.stack.is_some(), "{entry:?}");
        let ended = find("blocked poll ended");
        assert_eq!(ended["fields"]["request_id"], "frame-1", "{ended}");
        assert!(
            ended["fields"]["blocked_ms"].as_u64().unwrap() >= 140,
            "{ended}"
        );
        // After the poll ended nothing is reported for this thread any more.
        std::thread::sleep(Duration::from_millis(60));
        let count = String::from_utf8(captured.0.lock().unwrap().clone())
            .unwrap()
            .matches("worker blocked")
            .count();
        assert_eq!(count, 1, "{text}");
    }
}
