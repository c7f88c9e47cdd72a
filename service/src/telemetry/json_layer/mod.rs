//! The JSON lines layer: one tracing layer that filters, keeps each span's fields, times the
//! spans whose close line it prints, and writes whole lines ([`super::json`] has the format).
//!
//! **Why one layer of its own** instead of tracing-subscriber's `fmt::Layer` with a custom
//! formatter, wrapped in a close-event layer and a per-layer filter (the lab's first wiring):
//! the access line is written on every request, and in that stack most of its cost was
//! plumbing, not bytes: a registry look-up per layer per callback, the filter's bookkeeping,
//! a second buffer, and timings kept for the root span, whose close line is never printed
//! (`docs/benchmarks.md`, issue 20, has the instruction counts). Here a span is looked up
//! at most once per callback (not at all on enter, exit and close while no timed span is
//! open), it is rendered once, at creation, as the JSON object its lines copy, and a line is
//! built in one reused buffer and handed to the writer in one call.
//!
//! Filtering is `RUST_LOG`'s [`EnvFilter`], asked directly; it is told about spans only when
//! `RUST_LOG` has span directives (`[span{field=value}]`), the only ones that need them. The
//! layer never disables a callsite for the other layers (the watchdog's, the console's).

use std::{
    cell::RefCell,
    io::Write as _,
    sync::atomic::{AtomicUsize, Ordering},
};

use tracing::{
    level_filters::LevelFilter, span, subscriber::Interest, Event, Id, Level, Metadata, Subscriber,
};
use tracing_subscriber::{
    fmt::MakeWriter,
    layer::Context,
    registry::{LookupSpan, SpanRef},
    EnvFilter, Layer,
};

use super::json::{names_are_plain, write_timestamp, JsonVisitor, Line, Timing};

mod span_json;
mod timings;
use span_json::{write_scope, SpanJson};
use timings::Timings;

/// Writes JSON lines for the events and spans `filter` enables (see the module doc).
pub struct JsonLayer<W> {
    writer: W,
    filter: EnvFilter,
    /// The filter's most verbose level: anything beyond is rejected before asking it.
    max_level: LevelFilter,
    /// Whether `RUST_LOG` has span directives, so that the filter must follow every span.
    span_directives: bool,
    /// Whether `RUST_LOG` is a bare level (`info`), for which the level decides alone.
    level_only: bool,
    /// Spans with this name print no close line, so are not timed (the request's root span:
    /// its access line reports the request).
    untimed: &'static str,
    /// How many timed spans are open: while none is, enter, exit and close look no span up.
    /// A span counts from its creation, before any thread can enter it, to its close.
    timed_open: AtomicUsize,
}

impl<W> JsonLayer<W> {
    /// Lines for what `rust_log` enables, to `writer`, with close lines for every span but
    /// those named `untimed`.
    pub fn new(
        writer: W,
        rust_log: &str,
        untimed: &'static str,
    ) -> Result<Self, tracing_subscriber::filter::ParseError> {
        let filter = EnvFilter::try_new(rust_log)?;
        Ok(Self {
            writer,
            max_level: filter.max_level_hint().unwrap_or(LevelFilter::TRACE),
            filter,
            span_directives: rust_log.contains('['),
            level_only: rust_log.parse::<LevelFilter>().is_ok(),
            untimed,
            timed_open: AtomicUsize::new(0),
        })
    }

    fn enabled<S: Subscriber>(&self, meta: &Metadata<'_>, ctx: &Context<'_, S>) -> bool {
        *meta.level() <= self.max_level
            && (self.level_only || self.filter.enabled(meta, ctx.clone()))
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    /// The filter's verdict for this layer alone: in the lab's `Vec` of layers a callsite is
    /// enabled when any layer wants it, so a `never` here disables nothing the others need.
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        Layer::<S>::register_callsite(&self.filter, meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_new_span(attrs, id, ctx.clone());
        }
        let meta = attrs.metadata();
        if !self.enabled(meta, &ctx) {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let timings = (meta.name() != self.untimed).then(Timings::start);
        if timings.is_some() {
            self.timed_open.fetch_add(1, Ordering::Relaxed);
        }
        let json = SpanJson::new(meta, |visitor| attrs.record(visitor), timings);
        span.extensions_mut().insert(json);
    }

    /// `Span::record` adds to the span's stored fields.
    fn on_record(&self, id: &Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_record(id, values, ctx.clone());
        }
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(json) = extensions.get_mut::<SpanJson>() else {
            return;
        };
        json.record(span.metadata(), |visitor| values.record(visitor));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_enter(id, ctx.clone());
        }
        self.with_timings(id, &ctx, Timings::enter);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_exit(id, ctx.clone());
        }
        self.with_timings(id, &ctx, Timings::exit);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.span_directives {
            self.filter.on_close(id.clone(), ctx.clone());
        }
        let Some(span) = self.timed(&id, &ctx) else {
            return;
        };
        let timings = span
            .extensions_mut()
            .get_mut::<SpanJson>()
            .and_then(|json| json.timings.take());
        if let Some(timings) = timings {
            self.timed_open.fetch_sub(1, Ordering::Relaxed);
            let (busy, idle) = timings.close();
            self.write_line(span.metadata(), Some(span), |out, _| {
                out.push_str("\"message\":\"close\",\"time.busy\":\"");
                Timing(busy).write(out);
                out.push_str("\",\"time.idle\":\"");
                Timing(idle).write(out);
                out.push_str("\"");
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !self.enabled(meta, &ctx) {
            return;
        }
        self.write_line(meta, ctx.event_span(event), |out, plain_names| {
            event.record(&mut JsonVisitor::new(out, true, plain_names));
        });
    }
}

impl<W> JsonLayer<W>
where
    W: for<'w> MakeWriter<'w>,
{
    /// The span, unless it is one that is never timed: its name tells, without taking the
    /// span's extensions lock on every enter, exit and close of every request's root span.
    /// Not looked up at all while no timed span is open.
    /// (Inlined: on every enter, exit and close of every request's root span, the check of
    /// the counter is all there is.)
    #[inline(always)]
    fn timed<'c, S>(&self, id: &Id, ctx: &'c Context<'_, S>) -> Option<SpanRef<'c, S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        if self.timed_open.load(Ordering::Relaxed) == 0 {
            return None;
        }
        ctx.span(id).filter(|span| span.name() != self.untimed)
    }

    /// Runs `update` on the span's timings, if it is timed.
    #[inline(always)]
    fn with_timings<S>(&self, id: &Id, ctx: &Context<'_, S>, update: fn(&mut Timings))
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = self.timed(id, ctx) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(timings) = extensions
            .get_mut::<SpanJson>()
            .and_then(|json| json.timings.as_mut())
        {
            update(timings);
        }
    }

    /// One line: `fields` writes the inside of `"fields":{…}`, told whether `meta`'s names are
    /// plain ([`names_are_plain`], decided once per line); `leaf` is the innermost span
    /// of its scope (the event's parent, or the span closing), of which only the spans this
    /// layer enabled are printed, as `spans` from the root and `span` for the innermost.
    fn write_line<S>(
        &self,
        meta: &'static Metadata<'static>,
        leaf: Option<SpanRef<'_, S>>,
        fields: impl FnOnce(&mut Line, bool),
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let plain_names = names_are_plain(meta);
        with_line(|out| {
            out.push_str("{\"timestamp\":\"");
            write_timestamp(out, std::time::SystemTime::now());
            // One constant piece per level: a fixed-size copy, not three pieces.
            out.push_str(match *meta.level() {
                Level::ERROR => "\",\"level\":\"ERROR\",\"fields\":{",
                Level::WARN => "\",\"level\":\"WARN\",\"fields\":{",
                Level::INFO => "\",\"level\":\"INFO\",\"fields\":{",
                Level::DEBUG => "\",\"level\":\"DEBUG\",\"fields\":{",
                Level::TRACE => "\",\"level\":\"TRACE\",\"fields\":{",
            });
            fields(out, plain_names);
            out.push_str("},\"target\":");
            out.push_name(meta.target(), plain_names);
            if let Some(leaf) = leaf {
                write_scope(out, leaf);
            }
            out.push_str("}\n");
            // Write errors are the writer's to report (`telemetry::ReportErrorsOnce`).
            let _ = self.writer.make_writer_for(meta).write_all(out.as_bytes());
        });
    }
}

thread_local! {
    static SCRATCH: RefCell<Line> = RefCell::new(Line::default());
}

/// Builds a line (or a span's object) in this thread's reused buffer (a fresh one if a field's
/// `Debug` logged while one was being built).
fn with_line<R>(build: impl FnOnce(&mut Line) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            build(&mut line)
        }
        Err(_) => build(&mut Line::default()),
    })
}

#[cfg(test)]
mod tests;
