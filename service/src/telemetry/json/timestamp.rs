//! Times as tracing-subscriber prints them: the line's `timestamp`, and a span's `time.busy`
//! and `time.idle`.

use std::{
    cell::Cell,
    fmt::{self, Write as _},
};

use super::Line;

/// `YYYY-MM-DDTHH:MM:SS`: the part of a timestamp that changes once a second.
type Second = [u8; 19];

thread_local! {
    /// The current second, formatted once per second per thread.
    static SECOND: Cell<(u64, Second)> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `now` as tracing-subscriber prints it (RFC 3339, UTC, microseconds, `Z`): the date and time
/// of day formatted by humantime once a second, the microseconds two digits at a time, and the
/// whole timestamp copied into the line as one fixed-size piece.
pub fn write_timestamp(out: &mut Line, now: std::time::SystemTime) {
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, micros) = (since_epoch.as_secs(), since_epoch.subsec_micros());
    let second = SECOND.with(|cached| {
        let (cached_secs, text) = cached.get();
        if cached_secs == secs {
            return text;
        }
        let text = format_second(secs);
        cached.set((secs, text));
        text
    });
    let mut stamp = [0u8; 27];
    stamp[..19].copy_from_slice(&second);
    stamp[19] = b'.';
    for (i, pair) in [micros / 10_000, micros / 100 % 100, micros % 100]
        .into_iter()
        .enumerate()
    {
        let pair = pair as usize * 2;
        stamp[20 + 2 * i..22 + 2 * i].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    stamp[26] = b'Z';
    out.push_ascii(&stamp);
}

/// `00` to `99`.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Second `secs` of the Unix epoch as `YYYY-MM-DDTHH:MM:SS`.
fn format_second(secs: u64) -> Second {
    let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    // Always `YYYY-MM-DDTHH:MM:SSZ`: humantime formats no year past 9999.
    let text = humantime::format_rfc3339_seconds(whole).to_string();
    let mut second = [0; 19];
    second.copy_from_slice(&text.as_bytes()[..19]);
    second
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
