//! Statistics: pure functions over counters and HdrHistograms, unit-tested on their own.
//!
//! Latencies are recorded in microseconds into histograms bounded to 1 µs – 1 h at 3
//! significant digits (about 0.1 % error, fixed memory: `new_with_bounds`, never the
//! auto-resizing constructor). Values beyond the bound saturate instead of being lost.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest recordable latency, in µs (one hour).
pub const MAX_MICROS: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("static bounds are valid")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// `None` for an empty histogram (no response recorded).
pub fn summarize(h: &Histogram<u64>) -> Option<LatencySummary> {
    if h.is_empty() {
        return None;
    }
    Some(LatencySummary {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p99_9_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    })
}

/// Send rate actually achieved: `sent − 1` intervals between the first and the last send.
/// `None` when fewer than two requests were sent.
pub fn achieved_rate(sent: u64, first_send: Duration, last_send: Duration) -> Option<f64> {
    if sent < 2 || last_send <= first_send {
        return None;
    }
    Some((sent - 1) as f64 / (last_send - first_send).as_secs_f64())
}

/// Errors over requests; 0 when nothing was sent.
pub fn error_rate(errors: u64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    }
}

/// Whether a request sent at `sent` for a plan of `intended` counts as a late send.
pub fn is_late(intended: Option<Duration>, sent: Duration, tolerance: Duration) -> bool {
    intended.is_some_and(|i| sent.saturating_sub(i) > tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_report_percentiles_in_ms() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let s = summarize(&h).unwrap();
        assert!((s.p50_ms - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99_9_ms - 999.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() <= 1.0, "{s:?}");
        assert!(summarize(&new_histogram()).is_none());
    }

    #[test]
    fn rates_count_intervals_not_requests() {
        let r = achieved_rate(1000, Duration::ZERO, Duration::from_millis(1998)).unwrap();
        assert!((r - 500.0).abs() < 1e-9);
        assert_eq!(
            achieved_rate(1, Duration::ZERO, Duration::from_secs(1)),
            None
        );
        assert_eq!(error_rate(0, 0), 0.0);
        assert_eq!(error_rate(1, 4), 0.25);
    }

    #[test]
    fn lateness_needs_a_plan_and_a_margin() {
        let ms = Duration::from_millis;
        assert!(!is_late(None, ms(100), ms(2)));
        assert!(!is_late(Some(ms(10)), ms(12), ms(2)));
        assert!(is_late(Some(ms(10)), ms(13), ms(2)));
        assert!(!is_late(Some(ms(10)), ms(5), ms(2)));
    }

    #[test]
    fn huge_values_saturate_instead_of_vanishing() {
        let mut h = new_histogram();
        h.saturating_record(u64::MAX);
        assert_eq!(h.len(), 1);
        assert_eq!(micros(Duration::ZERO), 1);
    }
}
