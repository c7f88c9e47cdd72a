//! Micro-benchmarks of the service's tracing wiring (issues 8 and 9), built from the library's
//! public telemetry functions so they measure what the binary installs:
//! `telemetry::json_layer` (the JSON lines, with its own `EnvFilter`) and `watchdog::layer`
//! (the blocking watchdog), on one registry, writing through `telemetry::lossless_writer` (the
//! lossless batching writer `telemetry::init` builds) into `io::sink()`.
//!
//! - `event/filtered_out/*`: a `debug!` the filter rejects (goal ≤ 10 ns);
//! - `event/emitted/*`: an `info!` with three fields formatted as JSON and queued to the writer
//!   (goal ≤ 1 µs), outside any span and inside a request span;
//! - `span/*`: entering and exiting a request span (one poll of a handler), and a whole span's
//!   life (create, enter, exit, close — the close writes its own JSON line);
//! - `poll/*`: enter+exit of a handler's span with and without the watchdog layer; the
//!   difference is the watchdog's cost per poll (and the watchdog alone on the registry), and
//!   `poll/request_frame`, what the request middleware pays the watchdog per request poll.
//!
//! Run: `cargo bench -p service --bench telemetry` (numbers in `docs/benchmarks.md`). Pinning
//! the process to one CPU (`taskset -c 0`) makes the writer thread share it, as a one-worker
//! container would.

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use service::{
    telemetry::{batch_writer::BatchWriterGuard, json_layer, lossless_writer, BoxedLayer},
    watchdog,
};
use tracing::Dispatch;
use tracing_subscriber::{layer::SubscriberExt, Layer};

mod common;

/// The service's default watchdog threshold (`LONG_POLL_MS`).
const LONG_POLL: Duration = Duration::from_millis(40);

/// Which of the service's layers a subscriber carries.
#[derive(Clone, Copy)]
struct Wiring {
    json_filter: Option<&'static str>,
    watchdog: bool,
}

/// JSON (filter "info") and the watchdog: the release binary with `RUST_LOG=info`.
const SERVICE: Wiring = Wiring {
    json_filter: Some("info"),
    watchdog: true,
};

/// A subscriber with `wiring`'s layers, in `telemetry::init`'s order, and the writer's guard.
fn subscriber(wiring: Wiring) -> (Dispatch, BatchWriterGuard) {
    let (writer, guard) = lossless_writer(Box::new(std::io::sink()), "bench-writer");
    let mut layers: Vec<BoxedLayer> = Vec::new();
    if wiring.watchdog {
        layers.extend(
            watchdog::layer(watchdog::Options {
                threshold: LONG_POLL,
                root_span: service::request_telemetry::ROOT_SPAN,
                capture_stacks: false,
                keep_record: false,
            })
            .map(Layer::boxed),
        );
    }
    if let Some(filter) = wiring.json_filter {
        layers.push(json_layer(writer, filter).expect("valid filter"));
    }
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layers));
    (dispatch, guard)
}

/// Runs `f` with `wiring`'s subscriber as this thread's default, then drops it (so its
/// callsite interests do not leak into the next benchmark).
fn with_wiring(wiring: Wiring, f: impl FnOnce()) {
    let (dispatch, guard) = subscriber(wiring);
    tracing::dispatcher::with_default(&dispatch, f);
    drop(dispatch);
    drop(guard);
}

/// The request root span the service opens for every request (`request_telemetry`).
fn request_span() -> tracing::Span {
    tracing::info_span!(
        "request",
        request_id = "01939b4e-8a4c-7d2e-9f00-5a1b2c3d4e5f",
        method = "GET"
    )
}

fn events(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    for (name, filter) in [
        ("static_info", "info"),
        ("span_directive", "info,[cpu_inline]=debug"),
    ] {
        let wiring = Wiring {
            json_filter: Some(filter),
            ..SERVICE
        };
        with_wiring(wiring, || {
            group.bench_function(format!("filtered_out/{name}"), |b| {
                b.iter(|| tracing::debug!(order_id = black_box(7u64), "filtered out"))
            });
        });
    }
    let access_line = || {
        tracing::info!(
            order_id = black_box(7u64),
            status = 200u16,
            latency_ms = 0.42,
            "request finished"
        )
    };
    with_wiring(SERVICE, || {
        group.bench_function("emitted/no_span", |b| b.iter(access_line));
        let span = request_span();
        let _entered = span.enter();
        group.bench_function("emitted/in_request_span", |b| b.iter(access_line));
    });
    group.finish();
}

fn spans(c: &mut Criterion) {
    let mut group = c.benchmark_group("span");
    with_wiring(SERVICE, || {
        let span = request_span();
        group.bench_function("enter_exit", |b| b.iter(|| span.in_scope(|| black_box(1))));
        group.bench_function("create_enter_exit_close", |b| {
            b.iter(|| request_span().in_scope(|| black_box(1)))
        });
    });
    group.finish();
}

/// A handler's span (`#[instrument]`ed bug routes): the spans the watchdog's layer tracks.
fn handler_span() -> tracing::Span {
    tracing::info_span!(
        "config_sync",
        request_id = "01939b4e-8a4c-7d2e-9f00-5a1b2c3d4e5f",
        config = "app.toml"
    )
}

fn polls(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll");
    for (name, watchdog) in [("without_watchdog", false), ("with_watchdog", true)] {
        let wiring = Wiring {
            watchdog,
            ..SERVICE
        };
        with_wiring(wiring, || {
            let span = handler_span();
            group.bench_function(format!("enter_exit/{name}"), |b| {
                b.iter(|| span.in_scope(|| black_box(1)))
            });
        });
    }
    // The watchdog on a registry without the JSON layer: its own cost plus the registry's.
    // (A registry with no layer at all is no baseline: it disables every span.)
    with_wiring(
        Wiring {
            json_filter: None,
            watchdog: true,
        },
        || {
            let span = handler_span();
            group.bench_function("enter_exit/watchdog_only", |b| {
                b.iter(|| span.in_scope(|| black_box(1)))
            });
            // What the request middleware pays the watchdog per poll of a request.
            let (id, _) = service::request_id::RequestId::generate();
            let root = tracing::Span::none();
            group.bench_function("request_frame", |b| {
                b.iter(|| drop(black_box(watchdog::poll_request(&id, &root))))
            });
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = events, spans, polls
}
criterion_main!(benches);
