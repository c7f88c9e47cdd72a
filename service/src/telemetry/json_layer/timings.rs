//! A span's busy and idle time, kept for its close line.

use std::time::Instant;

/// Busy and idle nanoseconds of one span, as tracing-subscriber counts them: busy while entered
/// at least once, idle otherwise.
pub(super) struct Timings {
    busy: u64,
    idle: u64,
    last: Instant,
    entered: u32,
}

impl Timings {
    /// Timings from now, the span not entered yet.
    pub fn start() -> Self {
        Self {
            busy: 0,
            idle: 0,
            last: Instant::now(),
            entered: 0,
        }
    }

    pub fn enter(&mut self) {
        self.entered += 1;
        if self.entered == 1 {
            let now = Instant::now();
            self.idle += nanos(now - self.last);
            self.last = now;
        }
    }

    pub fn exit(&mut self) {
        self.entered = self.entered.saturating_sub(1);
        if self.entered == 0 {
            let now = Instant::now();
            self.busy += nanos(now - self.last);
            self.last = now;
        }
    }

    /// Busy and idle nanoseconds at the span's close (the time since its last exit is idle).
    pub fn close(self) -> (u64, u64) {
        (self.busy, self.idle + nanos(Instant::now() - self.last))
    }
}

fn nanos(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}
