//! The blocking watchdog: names a blocked worker in the logs of every build, while it blocks.
//!
//! **What exists, and why it is not enough here.** `tokio-blocked` warns about long polls of
//! tokio's `runtime.spawn` spans, which exist only with `tokio_unstable` plus tokio's `tracing`
//! feature (the canary), and only *after* the poll returns. `tokio-metrics`' `TaskMonitor`
//! counts slow polls of futures it wraps, in aggregate and after the fact, without a request
//! id. tokio's own poll hooks and worker metrics cannot be installed on actix-server's worker
//! runtimes (their tasks run in a `LocalSet`, and worker metrics are only submitted when a
//! worker parks, i.e. never during the block). None of them can say "this request is blocking
//! worker 2 right now", so this module does, with two small parts:
//!
//! - Per thread, what is being polled and since when: the request (reported directly by the
//!   request middleware through [`poll_request`]) and the spans entered inside it (recorded by
//!   [`WatchdogLayer`], a tracing layer: span enter/exit works on every executor). A checker
//!   thread looks every few milliseconds; once a poll has run longer than `LONG_POLL_MS` it
//!   emits one WARN `worker blocked` naming the innermost span (`handler`, or `request` when
//!   the request has none), its `request_id`, the thread and the time so far, as a child of
//!   that span so the line is found under the request id. When the poll ends, the worker
//!   emits one WARN `blocked poll ended` with the total.
//! - [`spawn_heartbeat`], a tiny task per worker runtime that should wake every few
//!   milliseconds; when it wakes late by more than the threshold it emits WARN `worker stall`.
//!   That catches blocking code outside any span (a detached, un-instrumented task).
//!
//! The layer only sees spans at INFO or above, so it makes no per-event work, and its cost per
//! poll is two uncontended mutex operations: a span's name and request id are looked up only
//! when a poll has already run past the threshold (`docs/benchmarks.md`). It ignores the
//! request's root span: the middleware reports the request itself, so with `RUST_LOG=off` no
//! layer wants the root span and tracing does not build it at all (0.3 µs per request).

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};

use tracing::{
    field::{Field, Visit},
    span, Id, Level, Subscriber,
};
use tracing_subscriber::{
    filter::filter_fn, layer::Context, registry::LookupSpan, Layer, Registry,
};

use crate::{request_id::RequestId, request_telemetry::ROOT_SPAN, telemetry::BoxedLayer};

/// Tracks span enter/exit per thread for the checker thread.
#[derive(Debug, Clone, Copy)]
pub struct WatchdogLayer {
    _private: (),
}

/// The span field the watchdog reports.
const REQUEST_ID: &str = "request_id";

/// What the checker reports about a poll: resolved once, when it fires.
#[derive(Debug, Clone)]
struct Culprit {
    name: &'static str,
    request_id: Option<Arc<str>>,
}

/// The request being polled, as the request middleware reports it.
#[derive(Debug)]
struct RequestFrame {
    id: RequestId,
    /// Its root span, when some layer wanted one (the warnings become its children).
    span: Option<Id>,
}

/// What one thread is polling right now. The hot path (every span enter and exit) only pushes
/// and pops ids under an uncontended lock; names and request ids are looked up by the checker,
/// and only for a poll that has run past the threshold.
#[derive(Debug, Default)]
struct PollState {
    /// The request being polled, if the poll is a request's.
    request: Option<RequestFrame>,
    /// Entered spans, outermost first. Empty between polls.
    stack: Vec<Id>,
    /// When the request or the outermost span was entered: the start of the poll.
    started: Option<Instant>,
    /// What the checker reported for this poll, if it did.
    reported: Option<Culprit>,
}

/// A thread's poll state, shared with the checker thread.
#[derive(Debug)]
struct Slot {
    thread: String,
    state: Mutex<PollState>,
}

static SLOTS: Mutex<Vec<Weak<Slot>>> = Mutex::new(Vec::new());

thread_local! {
    static SLOT: Arc<Slot> = {
        let thread = std::thread::current();
        let slot = Arc::new(Slot {
            thread: thread.name().map_or_else(|| format!("{:?}", thread.id()), str::to_owned),
            state: Mutex::new(PollState::default()),
        });
        let mut slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        slot
    };
}

/// The request id stored on a span when it is created.
struct SpanRequestId(Arc<str>);

struct RequestIdVisitor(Option<Arc<str>>);

impl Visit for RequestIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == REQUEST_ID {
            self.0 = Some(value.into());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == REQUEST_ID {
            self.0 = Some(format!("{value:?}").into());
        }
    }
}

/// The watchdog's layer, filtered to spans at INFO or above, and its checker thread; `None`
/// when `threshold` is zero (the watchdog is off).
pub fn layer(threshold: Duration) -> Option<BoxedLayer> {
    if threshold.is_zero() {
        return None;
    }
    let check_every = (threshold / 4).clamp(Duration::from_millis(1), Duration::from_millis(5));
    std::thread::Builder::new()
        .name("blocking-watchdog".into())
        .spawn(move || loop {
            std::thread::sleep(check_every);
            check(threshold);
        })
        .expect("spawn the blocking watchdog thread");
    ENABLED.store(true, Ordering::Relaxed);
    let spans_only = filter_fn(|meta| {
        meta.is_span() && *meta.level() <= Level::INFO && meta.name() != ROOT_SPAN
    });
    Some(
        WatchdogLayer { _private: () }
            .with_filter(spans_only)
            .boxed(),
    )
}

/// The name and request id of a live span, from the global registry.
fn resolve(id: &Id) -> Culprit {
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        let request_id = span
            .extensions()
            .get::<SpanRequestId>()
            .map(|r| Arc::clone(&r.0));
        Some(Culprit {
            name: span.name(),
            request_id,
        })
    })
    .unwrap_or(Culprit {
        name: "unknown",
        request_id: None,
    })
}

/// One pass of the checker: warn once about every poll that has run past `threshold`.
fn check(threshold: Duration) {
    let slots: Vec<Arc<Slot>> = {
        let slots = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().filter_map(Weak::upgrade).collect()
    };
    for slot in slots {
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(started) = state.started else {
            continue;
        };
        let elapsed = started.elapsed();
        if state.reported.is_some() || elapsed < threshold {
            continue;
        }
        // The innermost span names the handler; the request frame fills in what it lacks. The
        // span is entered on its thread and cannot close before the lock is released.
        let (parent, culprit) = match (state.stack.last(), &state.request) {
            (Some(id), request) => {
                let mut culprit = resolve(id);
                if culprit.request_id.is_none() {
                    culprit.request_id = request.as_ref().map(|r| r.id.as_str().into());
                }
                (Some(id.clone()), culprit)
            }
            (None, Some(request)) => (
                request.span.clone(),
                Culprit {
                    name: ROOT_SPAN,
                    request_id: Some(request.id.as_str().into()),
                },
            ),
            (None, None) => continue,
        };
        tracing::warn!(
            parent: parent,
            handler = culprit.name,
            request_id = culprit.request_id.as_deref(),
            thread = slot.thread,
            elapsed_ms = elapsed.as_millis() as u64,
            threshold_ms = threshold.as_millis() as u64,
            "worker blocked"
        );
        state.reported = Some(culprit);
    }
}

impl PollState {
    /// Between polls: no request and no span is being polled.
    fn is_idle(&self) -> bool {
        self.stack.is_empty() && self.request.is_none()
    }

    /// A poll starts when the request or a span is entered on an idle thread.
    fn begin_poll_if_idle(&mut self) {
        if self.is_idle() {
            self.started = Some(Instant::now());
            self.reported = None;
        }
    }

    /// Ends the poll; what to report if the checker warned about it.
    fn poll_ended(&mut self, thread: &str) -> Option<(Duration, Culprit, String)> {
        let started = self.started.take()?;
        let culprit = self.reported.take()?;
        Some((started.elapsed(), culprit, thread.to_owned()))
    }
}

/// Whether a watchdog was started (`LONG_POLL_MS` > 0); [`poll_request`] does nothing otherwise.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Marks the current thread as polling request `id` until the guard drops. The request
/// middleware calls it around each poll of the request, inside the request's root span `span`
/// (which may be disabled).
pub fn poll_request(id: &RequestId, span: &tracing::Span) -> PollGuard {
    if !ENABLED.load(Ordering::Relaxed) {
        return PollGuard { active: false };
    }
    SLOT.with(|slot| {
        let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
        state.begin_poll_if_idle();
        state.request = Some(RequestFrame {
            id: id.clone(),
            span: span.id(),
        });
    });
    PollGuard { active: true }
}

/// Ends a request's poll when dropped (see [`poll_request`]).
#[must_use = "the poll ends when the guard drops"]
#[derive(Debug)]
pub struct PollGuard {
    active: bool,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let ended = SLOT.with(|slot| {
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            state.request = None;
            if !state.stack.is_empty() {
                return None;
            }
            state.poll_ended(&slot.thread)
        });
        if let Some((blocked, culprit, thread)) = ended {
            // Still inside the request's span, if it has one: the line is the request's.
            tracing::warn!(
                handler = culprit.name,
                request_id = culprit.request_id.as_deref(),
                thread,
                blocked_ms = blocked.as_millis() as u64,
                "blocked poll ended"
            );
        }
    }
}

impl<S> Layer<S> for WatchdogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().fields().field(REQUEST_ID).is_none() {
            return;
        }
        let mut visitor = RequestIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(SpanRequestId(request_id));
        }
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        SLOT.with(|slot| {
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            state.begin_poll_if_idle();
            state.stack.push(id.clone());
        });
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        let ended = SLOT.with(|slot| {
            let mut state = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(position) = state.stack.iter().rposition(|entered| entered == id) {
                state.stack.truncate(position);
            }
            if !state.is_idle() {
                return None;
            }
            state.poll_ended(&slot.thread)
        });
        if let Some((blocked, culprit, thread)) = ended {
            // `id` is the outermost span of the poll: still open while it is being exited.
            tracing::warn!(
                parent: id.clone(),
                handler = culprit.name,
                request_id = culprit.request_id.as_deref(),
                thread,
                blocked_ms = blocked.as_millis() as u64,
                "blocked poll ended"
            );
        }
    }
}

/// Starts the heartbeat on the current worker runtime (once per thread): a task that sleeps
/// `threshold / 2` at a time and warns `worker stall` when it wakes more than `threshold` late.
pub fn spawn_heartbeat(threshold: Duration) {
    thread_local!(static STARTED: Cell<bool> = const { Cell::new(false) });
    if threshold.is_zero() || STARTED.with(|s| s.replace(true)) {
        return;
    }
    let period = (threshold / 2).clamp(Duration::from_millis(1), Duration::from_millis(100));
    let worker = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_owned();
    actix_web::rt::spawn(async move {
        loop {
            let due = tokio::time::Instant::now() + period;
            tokio::time::sleep_until(due).await;
            let lag = due.elapsed();
            if lag > threshold {
                tracing::warn!(
                    worker,
                    lag_ms = lag.as_millis() as u64,
                    threshold_ms = threshold.as_millis() as u64,
                    "worker stall"
                );
            }
        }
    });
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
    use crate::telemetry::json_layer;

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
            layer(Duration::from_millis(20)).expect("the watchdog is on"),
            json_layer(move || writer.clone(), "warn").unwrap(),
        ];
        // The checker thread logs through the global subscriber.
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layers))
            .unwrap();

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
