//! Schedule: the one scheduler, parameterised by [`Pacing`].
//!
//! Workers pull tickets from a shared [`Schedule`]; a ticket is a sequence number and, when
//! the run is paced, the instant at which that request *should* start. Open loop
//! ([`Pacing::Rate`]) plans request `i` at `t0 + i/rate`, like wrk2: a worker that is free
//! early sleeps until then, and a ticket claimed late (every worker was busy, i.e. the
//! in-flight cap was reached) is sent at once and its queueing counts in the corrected latency.
//! Closed loop ([`Pacing::Unpaced`]) hands out tickets with no planned instant until the
//! deadline, so each worker sends back to back. The two modes differ only in `claim`, not in a
//! second copy of the worker loop.
//!
//! Resolution: tokio's timer wheel ticks in milliseconds and rounds a deadline up, so a send
//! leaves up to ~1 ms after its plan even on an idle machine (wrk2 states the same ±1 ms). The
//! corrected latency carries that millisecond; `--late-after` (default 2 ms) sits above it, so
//! late sends count real falling behind, not timer granularity.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// How tickets are spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Open loop: `count` requests, one every `1/rate` seconds.
    Rate { per_second: f64, count: u64 },
    /// Closed loop: as fast as the workers go, until `duration` has passed.
    Unpaced { duration: Duration },
}

impl Pacing {
    /// Open-loop pacing for `duration` at `per_second` (the number of requests rounds down,
    /// but a run always has at least one).
    pub fn open(per_second: f64, duration: Duration) -> Self {
        let count = ((per_second * duration.as_secs_f64()).floor() as u64).max(1);
        Pacing::Rate { per_second, count }
    }
}

/// One request's place in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub seq: u64,
    /// When the request should start; `None` in closed loop.
    pub intended: Option<Instant>,
}

/// A shared plan that workers claim tickets from.
#[derive(Debug)]
pub struct Schedule {
    t0: Instant,
    pacing: Pacing,
    next: AtomicU64,
}

impl Schedule {
    pub fn new(t0: Instant, pacing: Pacing) -> Self {
        Self {
            t0,
            pacing,
            next: AtomicU64::new(0),
        }
    }

    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// The next ticket, or `None` when the plan is exhausted. Pure apart from the counter:
    /// `now` is passed in so the arithmetic is testable.
    pub fn claim(&self, now: Instant) -> Option<Ticket> {
        match self.pacing {
            Pacing::Rate { per_second, count } => {
                let seq = self.next.fetch_add(1, Ordering::Relaxed);
                (seq < count).then(|| Ticket {
                    seq,
                    intended: Some(self.t0 + Duration::from_secs_f64(seq as f64 / per_second)),
                })
            }
            Pacing::Unpaced { duration } => {
                if now >= self.t0 + duration {
                    return None;
                }
                let seq = self.next.fetch_add(1, Ordering::Relaxed);
                Some(Ticket {
                    seq,
                    intended: None,
                })
            }
        }
    }

    /// Claims a ticket and waits until its planned instant.
    pub async fn next(&self) -> Option<Ticket> {
        let now = Instant::now();
        let ticket = self.claim(now)?;
        if let Some(at) = ticket.intended {
            if at > now {
                tokio::time::sleep_until(at).await;
            }
        }
        Some(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_plans_evenly_spaced_tickets_and_ends() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, Pacing::open(500.0, Duration::from_secs(2)));
        let tickets: Vec<_> = std::iter::from_fn(|| s.claim(t0)).collect();
        assert_eq!(tickets.len(), 1000);
        assert_eq!(tickets[0].intended, Some(t0));
        let last = tickets[999].intended.unwrap() - t0;
        assert!((last.as_secs_f64() - 1.998).abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn closed_loop_ends_at_the_deadline_not_at_a_count() {
        let t0 = Instant::now();
        let s = Schedule::new(
            t0,
            Pacing::Unpaced {
                duration: Duration::from_secs(1),
            },
        );
        assert_eq!(s.claim(t0).unwrap().intended, None);
        assert_eq!(s.claim(t0).unwrap().seq, 1);
        assert!(s.claim(t0 + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn a_tiny_open_run_still_sends_one_request() {
        assert_eq!(
            Pacing::open(0.5, Duration::from_secs(1)),
            Pacing::Rate {
                per_second: 0.5,
                count: 1
            }
        );
    }
}
