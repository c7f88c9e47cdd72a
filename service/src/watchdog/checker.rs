//! The checker thread: every few milliseconds it looks at each worker's poll and heartbeat.
//! A poll past the threshold gets one `worker blocked` line (with the blocked code's stack)
//! and a record entry; later samples at 2× and 4× the threshold narrow the stack to the frames
//! they share. An overdue heartbeat with no such poll gets a stack sample for its stall line.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime},
};

use tracing::Id;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

use super::{
    layer::SpanRequestId,
    record::{self, BlockKind},
    stacks::{self, Sample, Stack},
    threads::{self, PollState, Reported, Slot, StallSample},
};

/// Samples per blocked poll: at 1×, 2× and 4× the threshold.
const SAMPLES: usize = 3;

#[derive(Debug, Clone, Copy)]
pub(super) struct Checker {
    pub threshold: Duration,
    /// The request's root span name: what a blocked request with no handler span is called.
    pub root_span: &'static str,
}

impl Checker {
    /// Starts the checker thread.
    pub fn spawn(self, capture_stacks: bool) {
        if capture_stacks {
            stacks::enable();
        }
        let every = (self.threshold / 4).clamp(Duration::from_millis(1), Duration::from_millis(5));
        std::thread::Builder::new()
            .name("blocking-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                for slot in threads::all() {
                    self.check_poll(&slot);
                    self.check_heartbeat(&slot);
                }
            })
            .expect("spawn the blocking watchdog thread");
    }

    fn check_poll(&self, slot: &Slot) {
        let (generation, started, attempts, culprit) = {
            let state = slot.state();
            let Some(started) = state.started else { return };
            let attempts = state.reported.as_ref().map_or(0, |r| r.attempts);
            // Due: the first report at 1×, then samples at 2× and 4× the threshold.
            let due = self.threshold * (1u32 << attempts.min(SAMPLES));
            if attempts >= SAMPLES || started.elapsed() < due {
                return;
            }
            // Named now, while the poll's spans are entered and cannot close (the lock is held).
            let culprit = if attempts == 0 {
                match self.culprit(&state) {
                    Some(culprit) => Some(culprit),
                    None => return,
                }
            } else {
                None
            };
            (state.generation, started, attempts, culprit)
        };
        // Captured and symbolized without the lock: the worker may end its poll meanwhile.
        let sample = stacks::sample(slot.capture.as_ref());
        let mut state = slot.state();
        let still_polling = state.generation == generation && state.started.is_some();
        let Some(culprit) = culprit else {
            // A later sample of a poll already reported.
            if let (true, Some(reported)) = (still_polling, state.reported.as_mut()) {
                reported.attempts = attempts + 1;
                if let Some(Sample::Taken(stack)) = sample {
                    reported.samples.push(stack);
                    if let Some(seq) = reported.record {
                        record::set_stack(seq, Stack::render(&stacks::common(&reported.samples)));
                    }
                }
            }
            return;
        };
        // The first report. Should the poll have ended during the capture, the line is still
        // written, outside its span (which may be closed by now), and its entry is closed.
        let elapsed = started.elapsed();
        let (stack, stack_raw, unavailable) = match &sample {
            Some(Sample::Taken(stack)) => (
                Some(Stack::render(&stack.frames)),
                Some(stack.raw.as_str()),
                None,
            ),
            Some(Sample::Unavailable(err)) => (None, None, Some(format!("unavailable: {err}"))),
            None => (None, None, None),
        };
        tracing::warn!(
            parent: culprit.parent.clone().filter(|_| still_polling),
            handler = culprit.handler,
            request_id = culprit.request_id.as_deref(),
            thread = slot.thread,
            elapsed_ms = elapsed.as_millis() as u64,
            threshold_ms = self.threshold.as_millis() as u64,
            stack = stack.as_deref().or(unavailable.as_deref()),
            stack_raw,
            build_id = stack_raw.and(stacks::build_id()),
            "worker blocked"
        );
        let record = record::begin(
            BlockKind::Blocked,
            culprit.handler,
            culprit.request_id.clone(),
            &slot.thread,
            SystemTime::now() - elapsed,
            stack,
        );
        if !still_polling {
            if let Some(seq) = record {
                record::finish(seq, SystemTime::now());
            }
            return;
        }
        state.reported = Some(Reported {
            handler: culprit.handler,
            request_id: culprit.request_id,
            record,
            attempts: 1,
            samples: match sample {
                Some(Sample::Taken(stack)) => vec![stack],
                _ => Vec::new(),
            },
        });
    }

    /// Who is being polled: the innermost span names the handler, and the request frame fills
    /// in what it lacks. `None` when nothing watched is polled.
    fn culprit(&self, state: &PollState) -> Option<Culprit> {
        match (state.stack.last(), &state.request) {
            (Some(id), request) => {
                let (handler, span_request_id) = resolve(id);
                let request_id =
                    span_request_id.or_else(|| request.as_ref().map(|r| r.id.as_str().into()));
                Some(Culprit {
                    parent: Some(id.clone()),
                    handler,
                    request_id,
                })
            }
            (None, Some(request)) => Some(Culprit {
                parent: request.span.clone(),
                handler: self.root_span,
                request_id: Some(Arc::from(request.id.as_str())),
            }),
            (None, None) => None,
        }
    }

    /// A heartbeat overdue by more than the threshold while no request poll is being watched:
    /// blocking code outside any request. Its stack is taken now, while it blocks, for the
    /// heartbeat's `worker stall` line.
    fn check_heartbeat(&self, slot: &Slot) {
        let due = slot.heartbeat_due.load(Ordering::Acquire);
        if due == 0 || slot.stall_sampled.load(Ordering::Relaxed) == due {
            return;
        }
        let now = threads::since_epoch(Instant::now());
        if now < due.saturating_add(self.threshold.as_nanos() as u64)
            || slot.state().started.is_some()
        {
            return;
        }
        slot.stall_sampled.store(due, Ordering::Relaxed);
        if let Some(Sample::Taken(stack)) = stacks::sample(slot.capture.as_ref()) {
            *slot.stall_sample.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(StallSample { due, stack });
        }
    }
}

/// What the first report of a blocked poll names.
struct Culprit {
    /// The span the line becomes a child of.
    parent: Option<Id>,
    handler: &'static str,
    request_id: Option<Arc<str>>,
}

/// The name and request id of a live span, from the global registry.
fn resolve(id: &Id) -> (&'static str, Option<Arc<str>>) {
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        let request_id = span
            .extensions()
            .get::<SpanRequestId>()
            .map(|r| Arc::clone(&r.0));
        Some((span.name(), request_id))
    })
    .unwrap_or(("unknown", None))
}
