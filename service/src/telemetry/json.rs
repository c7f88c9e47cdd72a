//! The JSON line format and the pieces that write it, for [`super::json_layer`]. The keys are
//! those of tracing-subscriber's `fmt::layer().json()` (so dashboards, Alloy and users' tools
//! see the same lines):
//!
//! ```json
//! {"timestamp":"…","level":"INFO","fields":{"message":"…",…},"target":"…","request_id":"…","spans":[{…},…],"span":{…,"name":"…"}}
//! ```
//!
//! plus one key of its own: inside a request, the `request_id` of the scope's root span (the
//! request span's) is copied to the top level, so log tools find it without digging into `span`
//! (tracing-subscriber nests span fields; tracing#1531). Outside a request there is none.
//!
//! **Why not `fmt().json()` or the `json-subscriber` crate**: both were measured against this
//! formatter with the same key set, and both cost more than twice its instructions per access
//! line (`docs/benchmarks.md`, issues 17 and 20). tracing-subscriber's JSON format stores each
//! span's fields as a JSON string that every event parses again; here a span's fields are
//! rendered once, as a ready-to-paste fragment (`"k":v,"k2":v2`), and every line copies it.
//! Numbers go through itoa and ryu (serde_json's own formatters).

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    ops::Range,
};

use tracing::field::{Field, Visit};

/// JSON text being built (a line, or a span's fields): UTF-8 bytes (only `str`s and other
/// `Line`s go in), with the copies within and between them that `String` lacks (a line's `span`
/// repeats the last of its `spans`; a span's `request_id` is copied out of its fields).
#[derive(Debug, Default)]
pub struct Line(Vec<u8>);

impl Line {
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn push_str(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Appends a copy of `range` of what is already written.
    pub fn copy_within(&mut self, range: Range<usize>) {
        self.0.extend_from_within(range);
    }

    /// Appends the part `range` of `other` (whole values, as [`JsonVisitor`] notes them).
    pub fn push_line(&mut self, other: &Line, range: Range<usize>) {
        self.0.extend_from_slice(&other.0[range]);
    }

    /// Appends `value` as a JSON string literal.
    pub fn push_json_str(&mut self, value: &str) {
        self.0.reserve(value.len() + 2);
        self.0.push(b'"');
        self.push_escaped(value);
        self.0.push(b'"');
    }

    /// Appends `value` escaped for the inside of a JSON string: copied whole when it needs no
    /// escaping, as nearly all text here does.
    fn push_escaped(&mut self, value: &str) {
        if any_needs_escape(value.as_bytes()) {
            push_escaped_slowly(self, value);
        } else {
            self.0.extend_from_slice(value.as_bytes());
        }
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

/// The span field copied to a line's top level.
const REQUEST_ID: &str = "request_id";

thread_local! {
    /// The current second as `YYYY-MM-DDTHH:MM:SS`, formatted once per second per thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `now` as tracing-subscriber prints it (RFC 3339, UTC, microseconds, `Z`), the date and time
/// of day formatted by humantime once a second and the microseconds by itoa.
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
    out.push_str(".");
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros);
    out.push_str(&"000000"[digits.len()..]);
    out.push_str(digits);
    out.push_str("Z");
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

/// Writes `"name":value` pairs, comma-separated, into a [`Line`]. A field's `Debug` that fails
/// leaves its value cut short, the line still JSON.
pub struct JsonVisitor<'a> {
    out: &'a mut Line,
    first: bool,
    /// Where in `out` the value of a field named `request_id` was written, if one was.
    pub request_id: Option<Range<usize>>,
}

impl<'a> JsonVisitor<'a> {
    /// `first`: whether no pair precedes in `out` (no comma before the first one).
    pub fn new(out: &'a mut Line, first: bool) -> Self {
        Self {
            out,
            first,
            request_id: None,
        }
    }

    /// `"name":value`, `value` written by `write`; where a `request_id` value is, noted.
    fn pair(&mut self, field: &Field, write: impl FnOnce(&mut Line)) {
        let name = field.name();
        self.out.0.reserve(name.len() + 4);
        if !std::mem::take(&mut self.first) {
            self.out.0.push(b',');
        }
        self.out.0.push(b'"');
        self.out.push_escaped(name);
        self.out.push_str("\":");
        let start = self.out.len();
        write(self.out);
        if name == REQUEST_ID {
            self.request_id = Some(start..self.out.len());
        }
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| out.push_json_str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.push_str("\"");
            let _ = write!(Escaping(out), "{value:?}");
            out.push_str("\"");
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| out.push_str(itoa::Buffer::new().format(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| out.push_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| {
            out.push_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.pair(field, |out| {
            if value.is_finite() {
                write_f64(out, value);
            } else {
                out.push_str("null");
            }
        });
    }
}

/// A finite `value` as ryu prints it (the shortest text that reads back as `value`). Whole
/// thousandths below a billion, as the access line's `latency_ms` always is, take a shortcut:
/// for them that text is the decimal itself, trailing zeros trimmed (`5.12`, `3.0`).
fn write_f64(out: &mut Line, value: f64) {
    let thousandths = (value * 1000.0).round();
    if (0.0..1e12).contains(&thousandths) && thousandths / 1000.0 == value {
        let n = thousandths as u64;
        let (whole, mut frac) = (n / 1000, n % 1000);
        out.push_str(itoa::Buffer::new().format(whole));
        out.push_str(".");
        let mut digits = 3;
        while frac % 10 == 0 && digits > 1 {
            frac /= 10;
            digits -= 1;
        }
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(frac);
        out.push_str(&"00"[..digits - text.len()]);
        out.push_str(text);
        return;
    }
    out.push_str(ryu::Buffer::new().format_finite(value));
}

/// Whether each byte must be escaped inside a JSON string (below 0x20, a quote, a backslash).
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// Whether any byte must be escaped. Most strings written are short (keys, names, methods):
/// a table look-up per byte; longer ones eight bytes per step, where a byte of a word is zero
/// (or below 0x20) exactly when the high bit of `(w - 0x01…) & !w` (or `(w - 0x20…) & !w`)
/// survives for some byte, and a quote or a backslash is a zero after an XOR with that byte
/// repeated.
fn any_needs_escape(bytes: &[u8]) -> bool {
    if bytes.len() < 16 {
        return bytes.iter().any(|&b| ESCAPED[usize::from(b)]);
    }
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let zero_in = |w: u64, below: u64| w.wrapping_sub(ONES * below) & !w;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
        let hits = zero_in(w, 0x20)
            | zero_in(w ^ (ONES * u64::from(b'"')), 1)
            | zero_in(w ^ (ONES * u64::from(b'\\')), 1);
        if hits & HIGH != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| ESCAPED[usize::from(b)])
}

/// `value` escaped, byte by byte: `\"`, `\\`, `\n`, `\r`, `\t`, `\u00XX` for other control
/// bytes. Out of line: text that needs it is rare, and the common path stays short.
#[cold]
#[inline(never)]
fn push_escaped_slowly(out: &mut Line, value: &str) {
    let mut clean_from = 0;
    for (i, &b) in value.as_bytes().iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[clean_from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        clean_from = i + 1;
    }
    out.push_str(&value[clean_from..]);
}

/// A `fmt::Write` adapter that escapes what passes through for the inside of a JSON string,
/// so `Debug` output streams into the line without an intermediate `String`.
struct Escaping<'a>(&'a mut Line);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_escaped(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line) -> &str {
        std::str::from_utf8(line.as_bytes()).unwrap()
    }

    #[test]
    fn notes_where_the_request_id_value_is() {
        let fields = tracing::field::FieldSet::new(
            &["method", "request_id"],
            tracing::callsite::Identifier(&CALLSITE),
        );
        let mut names = fields.iter();
        let (method, request_id) = (names.next().unwrap(), names.next().unwrap());
        for (value, text) in [("a-1", r#""a-1""#), ("q\"x\\", r#""q\"x\\""#)] {
            let mut out = Line::default();
            let mut visitor = JsonVisitor::new(&mut out, true);
            visitor.record_str(&method, "GET");
            visitor.record_str(&request_id, value);
            let range = visitor.request_id.take().unwrap();
            assert_eq!(&self::text(&out)[range], text);
            assert_eq!(
                self::text(&out),
                format!(r#""method":"GET","request_id":{text}"#)
            );
        }
        let mut out = Line::default();
        let mut visitor = JsonVisitor::new(&mut out, false);
        visitor.record_u64(&request_id, 7);
        let range = visitor.request_id.take().unwrap();
        assert_eq!(
            (&text(&out)[range], text(&out)),
            ("7", r#","request_id":7"#)
        );
        let mut visitor = JsonVisitor::new(&mut out, false);
        visitor.record_str(&method, "request_id");
        assert_eq!(visitor.request_id, None);
    }

    struct Callsite;
    static CALLSITE: Callsite = Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unimplemented!("not registered")
        }
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

    fn needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }

    #[test]
    fn the_scans_agree_with_the_byte_test() {
        let mut text: Vec<u8> = (0u8..=255).collect();
        text.extend(b"plain text, long enough for several words of eight");
        for start in 0..text.len() {
            for len in [0, 1, 7, 8, 9, 17, 40] {
                let slice = &text[start..(start + len).min(text.len())];
                let expected = slice.iter().any(|&b| needs_escape(b));
                assert_eq!(any_needs_escape(slice), expected, "{slice:?}");
            }
        }
    }

    #[test]
    fn floats_print_like_ryu() {
        let mut values: Vec<f64> = (0..200_000).map(|n| n as f64 / 1000.0).collect();
        values.extend([
            0.1 + 0.2,
            1e-7,
            123456.789012,
            1e21,
            2.5e9,
            999_999_999.999,
            1e9,
        ]);
        for value in values {
            let mut out = Line::default();
            write_f64(&mut out, value);
            assert_eq!(
                text(&out),
                ryu::Buffer::new().format_finite(value),
                "{value}"
            );
        }
    }

    #[test]
    fn escapes_what_json_requires() {
        let raw = "a\"b\\c\nd\u{1}é\t\r";
        let mut out = Line::default();
        out.push_json_str(raw);
        assert_eq!(text(&out), r#""a\"b\\c\nd\u0001é\t\r""#);
        let parsed: String = serde_json::from_str(text(&out)).unwrap();
        assert_eq!(parsed, raw);
        // Streamed `Debug` output is escaped the same way.
        let mut out = Line::default();
        let _ = write!(Escaping(&mut out), "{raw}");
        assert_eq!(text(&out), r#"a\"b\\c\nd\u0001é\t\r"#);
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
