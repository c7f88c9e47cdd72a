//! Close lines for handler spans (`"message":"close"` with `time.busy` and `time.idle`, exactly
//! as `FmtSpan::CLOSE` prints them), but not for the request's root span.
//!
//! **Why not `FmtSpan::CLOSE`.** It times every span the layer sees: a clock read and an
//! extension look-up at the span's creation, at each enter and exit, and at its close. Every
//! request has a root span whose close line the lab does not print (its access line reports
//! the request), so on the victim route that timing was pure cost: a profile of the service
//! under load put about 0.3 µs per request in those clock reads and look-ups. tracing-subscriber
//! cannot exclude a span from its timings, so this wrapper does the timing itself, only for the
//! spans whose close line is printed, and hands the close event to the wrapped `fmt::Layer`:
//! the line is formatted like every other, by the same formatter and writer.
//!
//! It must sit *inside* the per-layer filter (`CloseEvents<fmt::Layer>` filtered by the
//! `EnvFilter`), so it sees exactly the spans that filter enables, and so the close event goes
//! straight to the formatter, as tracing-subscriber's own close events do.

use std::{fmt, time::Instant};

use tracing::{
    field::{self, FieldSet},
    span, Event, Id, Metadata, Subscriber,
};
use tracing_subscriber::{layer::Context, registry::LookupSpan, Layer};

/// A layer (normally a `fmt::Layer` built without span events) plus close lines with timings
/// for every span but those named `skip`.
#[derive(Debug)]
pub struct CloseEvents<L> {
    inner: L,
    skip: &'static str,
}

impl<L> CloseEvents<L> {
    pub fn new(inner: L, skip: &'static str) -> Self {
        Self { inner, skip }
    }
}

/// Busy and idle nanoseconds of one span, as tracing-subscriber counts them: busy while entered
/// at least once, idle otherwise.
struct Timings {
    busy: u64,
    idle: u64,
    last: Instant,
    entered: u32,
}

impl<S, L> Layer<S> for CloseEvents<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != self.skip {
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(Timings {
                    busy: 0,
                    idle: 0,
                    last: Instant::now(),
                    entered: 0,
                });
            }
        }
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(id, values, ctx);
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(id, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.inner.on_event(event, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(t) = span.extensions_mut().get_mut::<Timings>() {
                t.entered += 1;
                if t.entered == 1 {
                    let now = Instant::now();
                    t.idle += nanos(now - t.last);
                    t.last = now;
                }
            }
        }
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(t) = span.extensions_mut().get_mut::<Timings>() {
                t.entered = t.entered.saturating_sub(1);
                if t.entered == 0 {
                    let now = Instant::now();
                    t.busy += nanos(now - t.last);
                    t.last = now;
                }
            }
        }
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let timed = ctx.span(&id).and_then(|span| {
            let timings = span.extensions_mut().remove::<Timings>()?;
            Some((timings, span.metadata()))
        });
        if let Some((t, meta)) = timed {
            let idle = t.idle + nanos(Instant::now() - t.last);
            let fields = FieldSet::new(&["message", "time.busy", "time.idle"], meta.callsite());
            let mut names = fields.iter();
            let (message, busy, idle_field) = (names.next(), names.next(), names.next());
            let (Some(message), Some(busy_field), Some(idle_field)) = (message, busy, idle_field)
            else {
                unreachable!("three names were given")
            };
            let busy = field::display(TimingDisplay(t.busy));
            let idle = field::display(TimingDisplay(idle));
            let values: [(&field::Field, Option<&dyn field::Value>); 3] = [
                (&message, Some(&"close" as &dyn field::Value)),
                (&busy_field, Some(&busy as &dyn field::Value)),
                (&idle_field, Some(&idle as &dyn field::Value)),
            ];
            let values = fields.value_set(&values);
            let event = Event::new_child_of(id.clone(), meta, &values);
            self.inner.on_event(&event, ctx.clone());
        }
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

fn nanos(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// A duration as tracing-subscriber prints `time.busy` and `time.idle` (`5.12ms`, `2.28µs`):
/// three significant digits and a unit. Its own type for this is private to it.
struct TimingDisplay(u64);

impl fmt::Display for TimingDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t = self.0 as f64;
        for unit in ["ns", "µs", "ms", "s"] {
            if t < 10.0 {
                return write!(f, "{t:.2}{unit}");
            } else if t < 100.0 {
                return write!(f, "{t:.1}{unit}");
            } else if t < 1000.0 {
                return write!(f, "{t:.0}{unit}");
            }
            t /= 1000.0;
        }
        write!(f, "{:.0}s", t * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::TimingDisplay;

    #[test]
    fn timings_print_like_tracing_subscriber() {
        for (nanos, text) in [
            (512, "512ns"),
            (2_280, "2.28µs"),
            (5_120_000, "5.12ms"),
            (45_600_000, "45.6ms"),
            (301_000_000, "301ms"),
            (2_500_000_000, "2.50s"),
            (7_200_000_000_000, "7200s"),
        ] {
            assert_eq!(TimingDisplay(nanos).to_string(), text);
        }
    }
}
