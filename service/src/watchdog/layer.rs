//! The tracing layer: span enter and exit mark what a thread is polling (it works on every
//! executor, actix's `LocalSet` workers included), and a span's `request_id` is kept for the
//! checker's line.
//!
//! It follows spans at INFO or above but the request's root span, and says so per callsite
//! rather than through a per-layer filter: such a filter looks every span up again on every
//! callback, and its bookkeeping would make the JSON layer beside it pay the same
//! (`telemetry::json_layer`). While none of the spans it follows is open, as when requests run
//! in their root span alone, it looks no span up on enter and exit.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tracing::{
    field::{Field, Visit},
    span,
    subscriber::Interest,
    Id, Level, Metadata, Subscriber,
};
use tracing_subscriber::{layer::Context, registry::LookupSpan, Layer};

use super::{poll, threads};

/// The span field the watchdog reports.
const REQUEST_ID: &str = "request_id";

/// Tracks span enter/exit per thread for the checker thread.
#[derive(Debug, Clone)]
pub struct WatchdogLayer {
    /// The request's root span, reported by the middleware itself ([`super::poll_request`]).
    root_span: &'static str,
    /// How many spans it follows are open. A span is counted from its creation, so before any
    /// thread can enter it, to its close, after its last exit.
    open: Arc<AtomicUsize>,
}

impl WatchdogLayer {
    pub(super) fn new(root_span: &'static str) -> Self {
        Self {
            root_span,
            open: Arc::default(),
        }
    }

    /// Whether the layer follows spans of this callsite.
    fn follows(&self, meta: &Metadata<'_>) -> bool {
        meta.is_span() && *meta.level() <= Level::INFO && meta.name() != self.root_span
    }

    /// Whether the layer follows span `id`; looked up only while it follows any open span.
    /// (Inlined: on every enter, exit and close of every request's root span, the check of the
    /// counter is all there is.)
    #[inline(always)]
    fn follows_span<S>(&self, id: &Id, ctx: &Context<'_, S>) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        self.open.load(Ordering::Relaxed) != 0
            && ctx.metadata(id).is_some_and(|meta| self.follows(meta))
    }
}

/// The request id stored on a span when it is created.
pub(super) struct SpanRequestId(pub Arc<str>);

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

impl<S> Layer<S> for WatchdogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// Only its own callsites; a callsite that no other layer wants either is then never built.
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.follows(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !self.follows(attrs.metadata()) {
            return;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        if attrs.metadata().fields().field(REQUEST_ID).is_none() {
            return;
        }
        let mut visitor = RequestIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(request_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(SpanRequestId(request_id));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.follows_span(&id, &ctx) {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.follows_span(id, &ctx) {
            return;
        }
        threads::with_current(|slot| {
            let mut state = slot.state();
            state.begin_poll_if_idle();
            state.stack.push(id.clone());
        });
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if !self.follows_span(id, &ctx) {
            return;
        }
        let ended = threads::with_current(|slot| {
            let mut state = slot.state();
            if let Some(position) = state.stack.iter().rposition(|entered| entered == id) {
                state.stack.truncate(position);
            }
            if !state.is_idle() {
                return None;
            }
            state.poll_ended().map(|ended| (ended, slot.thread.clone()))
        });
        if let Some(((blocked, reported), thread)) = ended {
            // `id` is the outermost span of the poll: still open while it is being exited.
            poll::poll_ended(Some(id.clone()), &thread, blocked, reported);
        }
    }
}
