//! What the service's criterion benchmarks share (a directory without `main.rs`, so cargo does
//! not take it for a benchmark of its own).

use std::time::Duration;

use criterion::Criterion;

/// Short warm-up and measurement, the same for every benchmark so their numbers compare.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}
