//! The server's CPU cost per HTTP request of two tracing wirings, measured in process: real
//! actix-web apps driven by `actix_web::test::init_service` and `call_service`, one
//! `GET /api/orders/1` per iteration with the body read to the end, so the whole request and
//! response path runs (middleware, routing, handler, every span and event, the JSON lines
//! formatted and queued to the writer).
//!
//! - `lab/*`: the lab's wiring exactly as the service installs it, from its library:
//!   `startup::app` on an `AppState` from `config::Settings` (parsed from flags, dependency
//!   latency 0), under `registry().with(telemetry::request_layers(..))` writing through
//!   `telemetry::lossless_writer` into `io::sink()`.
//!   - `lab/no_request_tracing`: `--request-tracing false --long-poll-ms 0 --log-filter off`,
//!     the baseline: no root span, id, header, access line or watchdog;
//!   - `lab/off`: `--log-filter off`, request tracing and the watchdog (40 ms) on, nothing
//!     emitted;
//!   - `lab/info`: `--log-filter info`, one JSON access line per request.
//! - `article/*`: the article's wiring (`article/wiring.rs`, shared with
//!   `examples/article_wiring.rs`): a registry-wide `EnvFilter`, `fmt::layer().json()` with the
//!   current span through tracing-appender's default (lossy) non-blocking writer into
//!   `io::sink()`, `TracingLogger::default()` and an `#[instrument]`ed handler with one `info!`.
//!   - `article/off`: filter `off`;
//!   - `article/info`: filter `info`, the handler's line per request.
//!
//! **Why in process.** `python3 -m bench wiring` measures the servers over TCP, where most of a
//! request's CPU is the kernel's (socket reads and writes, wake-ups), and on this machine that
//! part is large and bimodal from run to run; the wiring's difference drowns in it. Here the
//! time per iteration is the user-space cost of one request alone, so the wirings' costs can be
//! compared directly. It leaves out HTTP parsing and the response's serialization to bytes,
//! which the wiring does not touch.
//!
//! What the server has and this leaves out: the watchdog's per-worker heartbeat
//! (`watchdog::spawn_heartbeat`, one timer wake every 20 ms whatever the load, not per request).
//! What it keeps: the watchdog's checker thread (a wake every 5 ms) and the log writer's
//! thread, which run on the other CPU unless the process is pinned.
//!
//! Run: `cargo bench -p service --bench request`. `taskset -c 0 cargo bench -p service --bench
//! request` pins the process to one CPU like the one-worker server of `python3 -m bench wiring`,
//! so the writer and watchdog threads share the CPU with the requests and their time is counted.
//!
//! Each case checks one response before measuring (200, the order's body and, with request
//! tracing, an `x-request-id` header), and each case's subscriber is this thread's default only
//! while it runs and is dropped afterwards: callsite interest is cached globally, so a
//! subscriber left alive would change what the next case's callsites cost.

use std::{hint::black_box, time::Instant};

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    http::StatusCode,
    rt::{System, SystemRunner},
    test, web,
};
use clap::Parser;
use criterion::{criterion_group, measurement::WallTime, BenchmarkGroup, Criterion};
use service::{config::Settings, routes::AppState, startup, telemetry};
use tracing::Dispatch;
use tracing_subscriber::{layer::SubscriberExt, EnvFilter};

mod common;

#[path = "article/wiring.rs"]
mod wiring;

/// The route both wirings serve: the lab's victim, the article's only route.
const URI: &str = "/api/orders/1";

/// The benchmark's request, `GET /api/orders/1`; a fresh one per iteration. A closure, so its
/// type (actix-http's `Request`) is left to inference and the bench needs no direct dependency
/// on actix-http.
macro_rules! order_request {
    () => {
        || test::TestRequest::get().uri(URI).to_request()
    };
}

/// Every environment variable `Settings` reads. clap reads them too, so they are cleared before
/// the benchmarks: a `RUST_LOG` or `LONG_POLL_MS` in the caller's shell must not change a case.
const SETTINGS_ENV: [&str; 12] = [
    "LISTEN_ADDR",
    "WORKERS",
    "LOG_FORMAT",
    "RUST_LOG",
    "LOG_DIR",
    "CONFIG_DIR",
    "SLOW_DISK_MS",
    "DEPENDENCY_MS",
    "INSTANCE",
    "LONG_POLL_MS",
    "REQUEST_TRACING",
    "SHUTDOWN_TIMEOUT_S",
];

/// One configuration of the lab's service.
struct LabCase {
    name: &'static str,
    request_tracing: bool,
    long_poll_ms: &'static str,
    log_filter: &'static str,
}

const LAB_CASES: [LabCase; 3] = [
    LabCase {
        name: "no_request_tracing",
        request_tracing: false,
        long_poll_ms: "0",
        log_filter: "off",
    },
    LabCase {
        name: "off",
        request_tracing: true,
        long_poll_ms: "40",
        log_filter: "off",
    },
    LabCase {
        name: "info",
        request_tracing: true,
        long_poll_ms: "40",
        log_filter: "info",
    },
];

impl LabCase {
    /// The service's settings for this case, every flag that matters given explicitly.
    fn settings(&self) -> Settings {
        let args = [
            "service",
            "--log-format",
            "json",
            "--log-filter",
            self.log_filter,
            "--dependency-ms",
            "0",
            "--long-poll-ms",
            self.long_poll_ms,
            "--request-tracing",
            if self.request_tracing {
                "true"
            } else {
                "false"
            },
            "--instance",
            "bench",
        ];
        Settings::try_parse_from(args)
            .unwrap_or_else(|err| panic!("lab/{}: invalid settings {args:?}: {err}", self.name))
    }
}

fn lab(c: &mut Criterion) {
    let mut group = c.benchmark_group("lab");
    for case in &LAB_CASES {
        let settings = case.settings();
        let (writer, guard) = telemetry::lossless_writer(Box::new(std::io::sink()), "bench-writer");
        let layers = telemetry::request_layers(&settings, writer, None)
            .unwrap_or_else(|err| panic!("lab/{}: {err}", case.name));
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(layers));
        with_subscriber(dispatch, guard, || {
            let system = System::new();
            let state = web::Data::new(AppState::new(&settings, &settings.resolve_config_dir()));
            let app = system.block_on(test::init_service(startup::app(
                state,
                settings.request_tracing,
            )));
            let expect = Expect {
                case: format!("lab/{}", case.name),
                request_id: settings.request_tracing,
            };
            measure(
                &mut group,
                case.name,
                &system,
                &app,
                order_request!(),
                &expect,
            );
        });
    }
    group.finish();
}

fn article(c: &mut Criterion) {
    let mut group = c.benchmark_group("article");
    for filter in ["off", "info"] {
        let (writer, guard) = tracing_appender::non_blocking(std::io::sink());
        let dispatch = Dispatch::new(wiring::subscriber(EnvFilter::new(filter), writer));
        with_subscriber(dispatch, guard, || {
            let system = System::new();
            let app = system.block_on(test::init_service(wiring::app()));
            let expect = Expect {
                case: format!("article/{filter}"),
                request_id: false,
            };
            measure(&mut group, filter, &system, &app, order_request!(), &expect);
        });
    }
    group.finish();
}

/// Runs `f` with `dispatch` as this thread's default, then drops it and its writer, and checks
/// that nothing kept it alive (a leftover subscriber would take part in every later callsite's
/// interest).
fn with_subscriber<G>(dispatch: Dispatch, guard: G, f: impl FnOnce()) {
    let weak = dispatch.downgrade();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    drop(dispatch);
    tracing::callsite::rebuild_interest_cache();
    drop(guard);
    assert!(
        weak.upgrade().is_none(),
        "a benchmark's subscriber outlived its case"
    );
}

/// What one case's response must look like.
struct Expect {
    case: String,
    /// Whether the response must carry an `x-request-id` header (the lab's request tracing).
    request_id: bool,
}

/// Checks one response, then measures one request per iteration, body read to the end (what
/// `test::call_and_read_body` does, for any request type).
fn measure<S, R, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    system: &SystemRunner,
    app: &S,
    request: impl Fn() -> R,
    expect: &Expect,
) where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    system.block_on(check(app, request(), expect));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let response = test::call_service(app, request()).await;
                    let body = test::read_body(response).await;
                    black_box(body);
                }
                start.elapsed()
            })
        })
    });
}

/// Panics unless the app answers the benchmark's request as `expect` says: a benchmark that
/// measures a 404 or an error page is worthless.
async fn check<S, R, B>(app: &S, request: R, expect: &Expect)
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let case = &expect.case;
    let response = test::call_service(app, request).await;
    let status = response.status();
    let request_id = response.headers().get("x-request-id").cloned();
    let body = test::read_body(response).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(
        status,
        StatusCode::OK,
        "{case}: GET {URI} answered {status}, not 200: {body}"
    );
    assert!(
        body.contains("\"order_id\":1"),
        "{case}: GET {URI} answered an unexpected body: {body}"
    );
    if expect.request_id {
        assert!(
            request_id.is_some(),
            "{case}: GET {URI} has no x-request-id header: request tracing is not running"
        );
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = lab, article
}

fn main() {
    // Edition 2021: `remove_var` is safe, and the process has no other thread yet.
    for var in SETTINGS_ENV {
        std::env::remove_var(var);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
