//! Times as tracing-subscriber prints them: the line's `timestamp`, and a span's `time.busy`
//! and `time.idle`.

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
};

use super::Line;

thread_local! {
    /// The current second as `YYYY-MM-DDTHH:MM:SS`, formatted once per second per thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `now` as tracing-subscriber prints it (RFC 3339, UTC, microseconds, `Z`), the date and time
/// of day formatted by humantime once a second, the microseconds digit by digit.
pub fn write_timestamp(out: &mut Line, now: std::time::SystemTime) {
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, micros) = (since_epoch.as_secs(), since_epoch.subsec_micros());
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != secs {
            let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            second.1.clear();
            second.1.push_str(text.trim_end_matches('Z'));
            second.0 = secs;
        }
        out.push_str(&second.1);
    });
    // `.` and six digits, then `Z`.
    let mut tail = *b".000000Z";
    let mut rest = micros;
    for digit in tail[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push_ascii(&tail);
}

/// A span's busy or idle nanoseconds as tracing-subscriber prints `time.busy` and `time.idle`
/// (`5.12ms`, `2.28µs`): three significant digits and a unit. Its own type for this is private.
pub struct Timing(pub u64);

impl Timing {
    pub fn write(&self, out: &mut Line) {
        // Writing to a `Line` cannot fail.
        let _ = write!(out, "{self}");
    }
}

impl fmt::Display for Timing {
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
    use super::*;

    fn text(line: &Line) -> &str {
        std::str::from_utf8(line.as_bytes()).unwrap()
    }

    #[test]
    fn timestamps_print_like_tracing_subscriber() {
        let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
        for micros in [0, 7, 999_999, 123_456, 1_000_000, 86_400_000_001] {
            let now = base + std::time::Duration::from_micros(micros);
            let mut out = Line::default();
            write_timestamp(&mut out, now);
            assert_eq!(
                text(&out),
                humantime::format_rfc3339_micros(now).to_string()
            );
        }
    }

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
            assert_eq!(Timing(nanos).to_string(), text);
        }
    }
}
