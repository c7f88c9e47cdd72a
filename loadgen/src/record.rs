//! Record: folds each request's outcome into counters and two HdrHistograms per route and
//! endpoint, plus a bounded list of the slowest requests.
//!
//! Two latencies per response, as wrk2 keeps them: *corrected* = end − intended start
//! (counts time a request waited because the generator or the server was stalled, so it is
//! free of coordinated omission) and *actual* = end − actual send. Recording corrected values
//! never uses HdrHistogram's `record_correct` on top: the intended start already corrects, and
//! correcting twice is wrong. Memory is bounded: histograms are fixed-size and the slowest
//! list is a min-heap of `N` entries, so a run of any length costs the same.

use std::{cmp::Reverse, collections::BinaryHeap, time::Duration};

use hdrhistogram::Histogram;
use uuid::Uuid;

use crate::{
    scenario::Route,
    send::{ErrorKind, Outcome},
    stats,
};

/// One finished request, with instants as offsets from the round's start.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub route: Route,
    pub request_id: Uuid,
    /// Planned start (open loop only).
    pub intended: Option<Duration>,
    pub sent: Duration,
    pub done: Duration,
    pub outcome: Outcome,
}

impl Sample {
    pub fn corrected(&self) -> Duration {
        self.done.saturating_sub(self.intended.unwrap_or(self.sent))
    }

    pub fn actual(&self) -> Duration {
        self.done.saturating_sub(self.sent)
    }
}

/// Everything counted for one route on one endpoint (or any merge of those).
#[derive(Debug, Clone)]
pub struct Bucket {
    pub requests: u64,
    /// Responses by status class: index 0 = 1xx … 4 = 5xx.
    pub status_classes: [u64; 5],
    /// Errors by [`ErrorKind`], in `ErrorKind::ALL` order.
    pub errors: [u64; 5],
    pub late_sends: u64,
    pub id_mismatches: u64,
    pub first_send: Option<Duration>,
    pub last_send: Duration,
    pub corrected: Histogram<u64>,
    pub actual: Histogram<u64>,
}

impl Default for Bucket {
    fn default() -> Self {
        Self {
            requests: 0,
            status_classes: [0; 5],
            errors: [0; 5],
            late_sends: 0,
            id_mismatches: 0,
            first_send: None,
            last_send: Duration::ZERO,
            corrected: stats::new_histogram(),
            actual: stats::new_histogram(),
        }
    }
}

impl Bucket {
    pub fn record(&mut self, s: &Sample, late_after: Duration) {
        self.requests += 1;
        self.first_send = Some(self.first_send.map_or(s.sent, |f| f.min(s.sent)));
        self.last_send = self.last_send.max(s.sent);
        if stats::is_late(s.intended, s.sent, late_after) {
            self.late_sends += 1;
        }
        if let Some(kind) = s.outcome.error {
            self.errors[error_index(kind)] += 1;
        }
        if let Some(status) = s.outcome.status {
            if (100..600).contains(&status) {
                self.status_classes[usize::from(status / 100 - 1)] += 1;
            }
            if !s.outcome.id_echoed {
                self.id_mismatches += 1;
            }
            self.corrected
                .saturating_record(stats::micros(s.corrected()));
            self.actual.saturating_record(stats::micros(s.actual()));
        }
    }

    pub fn merge(&mut self, other: &Bucket) {
        self.requests += other.requests;
        for i in 0..5 {
            self.status_classes[i] += other.status_classes[i];
            self.errors[i] += other.errors[i];
        }
        self.late_sends += other.late_sends;
        self.id_mismatches += other.id_mismatches;
        self.first_send = match (self.first_send, other.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_send = self.last_send.max(other.last_send);
        self.corrected
            .add(&other.corrected)
            .expect("histograms share bounds");
        self.actual
            .add(&other.actual)
            .expect("histograms share bounds");
    }

    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn achieved_rate(&self) -> Option<f64> {
        stats::achieved_rate(
            self.requests,
            self.first_send.unwrap_or_default(),
            self.last_send,
        )
    }
}

pub fn error_index(kind: ErrorKind) -> usize {
    ErrorKind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("ALL lists every kind")
}

/// One entry of the slowest list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlowRequest {
    /// First field: the heap orders by corrected latency.
    pub corrected: Duration,
    pub actual: Option<Duration>,
    pub request_id: Uuid,
    pub route: Route,
    /// Index into the run's endpoints.
    pub endpoint: usize,
    /// Planned (open loop) or actual (closed loop) start, as an offset from the round start.
    pub start: Duration,
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    /// Actual send and answer (or failure), as offsets from the round start: the interval
    /// the suspects join matches against the service's blocks.
    pub sent: Duration,
    pub done: Duration,
}

/// The `cap` slowest requests seen, by corrected latency.
#[derive(Debug, Clone)]
pub struct Slowest {
    cap: usize,
    heap: BinaryHeap<Reverse<SlowRequest>>,
}

impl Slowest {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            heap: BinaryHeap::with_capacity(cap + 1),
        }
    }

    pub fn offer(&mut self, r: SlowRequest) {
        if self.cap == 0 {
            return;
        }
        if self.heap.len() < self.cap {
            self.heap.push(Reverse(r));
        } else if self.heap.peek().is_some_and(|Reverse(min)| r > *min) {
            self.heap.pop();
            self.heap.push(Reverse(r));
        }
    }

    pub fn merge(&mut self, other: Slowest) {
        for Reverse(r) in other.heap {
            self.offer(r);
        }
    }

    /// Slowest first.
    pub fn into_sorted(self) -> Vec<SlowRequest> {
        let mut v: Vec<_> = self.heap.into_iter().map(|Reverse(r)| r).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// How many of each route's slowest requests a lane keeps as candidates for "over the route's
/// p99" (the suspects join): bounded, so requests over p99 beyond this many per route and
/// endpoint are not considered.
pub const P99_CANDIDATES: usize = 64;

/// What one lane (one endpoint) has recorded; workers share it behind a mutex that is held
/// only for the few hundred nanoseconds of a `record`.
#[derive(Debug, Clone)]
pub struct LaneRecorder {
    pub endpoint: usize,
    pub routes: Vec<Option<Bucket>>,
    pub slowest: Slowest,
    /// Per route: its slowest [`P99_CANDIDATES`] requests.
    pub route_slowest: Vec<Slowest>,
    late_after: Duration,
}

impl LaneRecorder {
    pub fn new(endpoint: usize, slowest: usize, late_after: Duration) -> Self {
        Self {
            endpoint,
            routes: vec![None; Route::ALL.len()],
            slowest: Slowest::new(slowest),
            route_slowest: vec![Slowest::new(P99_CANDIDATES); Route::ALL.len()],
            late_after,
        }
    }

    pub fn record(&mut self, s: &Sample) {
        self.routes[s.route.index()]
            .get_or_insert_with(Bucket::default)
            .record(s, self.late_after);
        let failed_without_response = s.outcome.status.is_none();
        let slow = SlowRequest {
            corrected: s.corrected(),
            actual: (!failed_without_response).then(|| s.actual()),
            request_id: s.request_id,
            route: s.route,
            endpoint: self.endpoint,
            start: s.intended.unwrap_or(s.sent),
            status: s.outcome.status,
            error: s.outcome.error,
            sent: s.sent,
            done: s.done,
        };
        self.slowest.offer(slow);
        self.route_slowest[s.route.index()].offer(slow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, intended: Option<u64>, sent: u64) -> Sample {
        Sample {
            route: Route::Orders,
            request_id: Uuid::now_v7(),
            intended: intended.map(Duration::from_millis),
            sent: Duration::from_millis(sent),
            done: Duration::from_millis(sent + ms),
            outcome: Outcome {
                status: Some(200),
                error: None,
                id_echoed: true,
            },
        }
    }

    #[test]
    fn corrected_latency_includes_the_wait_before_sending() {
        let s = sample(5, Some(100), 600);
        assert_eq!(s.corrected(), Duration::from_millis(505));
        assert_eq!(s.actual(), Duration::from_millis(5));
        let mut b = Bucket::default();
        b.record(&s, Duration::from_millis(2));
        assert_eq!((b.late_sends, b.status_classes[1]), (1, 1));
    }

    #[test]
    fn slowest_keeps_only_the_top_n_in_order() {
        let mut top = Slowest::new(3);
        for ms in [5, 50, 1, 500, 7, 60] {
            let s = sample(ms, None, 0);
            let mut lane = LaneRecorder::new(0, 3, Duration::ZERO);
            lane.record(&s);
            top.merge(lane.slowest);
        }
        let got: Vec<_> = top
            .into_sorted()
            .iter()
            .map(|r| r.corrected.as_millis())
            .collect();
        assert_eq!(got, [500, 60, 50]);
    }

    #[test]
    fn buckets_merge_counts_and_histograms() {
        let mut a = Bucket::default();
        a.record(&sample(1, None, 10), Duration::ZERO);
        let mut b = Bucket::default();
        let mut failed = sample(1, None, 30);
        failed.outcome = Outcome {
            status: None,
            error: Some(ErrorKind::Connect),
            id_echoed: false,
        };
        b.record(&failed, Duration::ZERO);
        a.merge(&b);
        assert_eq!((a.requests, a.error_total(), a.corrected.len()), (2, 1, 1));
        assert_eq!(a.first_send, Some(Duration::from_millis(10)));
        assert_eq!(a.last_send, Duration::from_millis(30));
    }
}
