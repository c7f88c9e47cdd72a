//! The JSON line format, written for speed with the field layout of tracing-subscriber's
//! `fmt::layer().json()` (so dashboards, Alloy and users' tools see the same keys):
//!
//! ```json
//! {"timestamp":"…","level":"INFO","fields":{"message":"…",…},"target":"…","request_id":"…","span":{…,"name":"…"},"spans":[{…},…]}
//! ```
//!
//! plus one key of its own: inside a request, the `request_id` of the scope's root span (the
//! request span's) is copied to the top level, so log tools find it without digging into `span`
//! (tracing-subscriber nests span fields; tracing#1531). Outside a request there is none.
//!
//! **Why not `fmt().json()`.** tracing-subscriber's JSON format stores each span's fields as a
//! JSON *string*; every `Span::record` parses it, rebuilds a map and serialises it again, and
//! every event re-parses each stored span to print `span` and `spans` (its source calls this
//! far from efficient; `docs/benchmarks.md` has the profile). Here a span's fields are
//! serialised once, as a ready-to-paste JSON fragment (`"k":v,"k2":v2`), and an event copies
//! the fragments verbatim. **Why not the `json-subscriber` crate**, which is built for this:
//! version 0.3 wrapped in [`super::close_events::CloseEvents`] writes the same key set (the
//! field-set test passes), but this formatter wins by far more than the noise, so it stays:
//! 13.6 k against 31.6 k instructions for the access line per request (callgrind) and
//! 7.8 µs against 12.5 µs per request in process (criterion), `docs/benchmarks.md`. It keeps
//! tracing-subscriber's `fmt::Layer`, its writers and its filters, and replaces only the two
//! formatting traits. (The close lines come from [`super::close_events`], which skips the root
//! span `request`: its access line already reports the request.)

use std::{
    cell::RefCell,
    fmt::{self, Write as _},
    ops::Range,
};

use tracing::{
    field::{Field, Visit},
    span, Event, Subscriber,
};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields, FormattedFields},
    registry::LookupSpan,
};

/// Formats span and event fields as a JSON object's *inside*: `"k":v,"k2":v2`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonFields;

/// Formats whole lines (see the module doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        via_scratch(&mut writer, |out| {
            let mut visitor = JsonVisitor::new(out, true);
            fields.record(&mut visitor);
            visitor.result
        })
    }

    /// `Span::record` appends to the stored fragment instead of re-serialising it.
    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut visitor = JsonVisitor::new(&mut current.fields, first);
        fields.record(&mut visitor);
        visitor.result
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        via_scratch(&mut writer, |out| {
            let meta = event.metadata();
            out.push_str("{\"timestamp\":\"");
            write_timestamp(out, std::time::SystemTime::now());
            out.push_str("\",\"level\":\"");
            out.push_str(meta.level().as_str());
            out.push_str("\",\"fields\":{");
            let mut visitor = JsonVisitor::new(out, true);
            event.record(&mut visitor);
            visitor.result?;
            out.push_str("},\"target\":");
            write_json_str(out, meta.target())?;
            // `spans` is the whole scope from the root, `span` the innermost span (for a close
            // event: the span closing), as tracing-subscriber prints them. The root span's
            // `request_id` (the request's) goes to the top level first.
            if let Some(leaf) = ctx.event_scope().and_then(|mut scope| scope.next()) {
                for (i, span) in leaf.scope().from_root().enumerate() {
                    let extensions = span.extensions();
                    let fields = extensions
                        .get::<FormattedFields<JsonFields>>()
                        .map_or("", |f| f.fields.as_str());
                    if i == 0 {
                        if let Some(value) = request_id_in(fields) {
                            out.push_str(",\"request_id\":");
                            out.push_str(&fields[value]);
                        }
                        out.push_str(",\"spans\":[");
                    } else {
                        out.push(',');
                    }
                    write_span(out, fields, span.name())?;
                }
                out.push_str("],\"span\":");
                let extensions = leaf.extensions();
                let fields = extensions
                    .get::<FormattedFields<JsonFields>>()
                    .map_or("", |f| f.fields.as_str());
                write_span(out, fields, leaf.name())?;
            }
            out.push_str("}\n");
            Ok(())
        })
    }
}

thread_local! {
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Builds text in this thread's scratch `String`, then hands it to `writer` in one call.
/// `Writer` is a `dyn fmt::Write`: a line written piece by piece through it costs a dynamic
/// call and a bounds check per piece (dozens per line); a `String` inlines them.
fn via_scratch(
    writer: &mut Writer<'_>,
    build: impl FnOnce(&mut String) -> fmt::Result,
) -> fmt::Result {
    SCRATCH.with(|scratch| {
        let mut fresh = String::new();
        let mut borrowed = scratch.try_borrow_mut();
        let out = match borrowed.as_deref_mut() {
            Ok(out) => {
                out.clear();
                out
            }
            // Re-entered (a field's `Debug` logged something): use a fresh buffer.
            Err(_) => &mut fresh,
        };
        build(out)?;
        writer.write_str(out)
    })
}

/// `{<stored fields>,"name":"<span name>"}`, the stored fragment copied as it is.
fn write_span(out: &mut String, fields: &str, name: &str) -> fmt::Result {
    out.push('{');
    if !fields.is_empty() {
        out.push_str(fields);
        out.push(',');
    }
    out.push_str("\"name\":");
    write_json_str(out, name)?;
    out.push('}');
    Ok(())
}

/// Where the value of a `"request_id":…` pair is in a span's stored fields (`"k":v,"k2":v2`).
/// The request span records it first, so that is looked at first. A key is found only at a
/// pair's start: inside a JSON string every `"` is escaped, so `,"` never occurs there.
fn request_id_in(fields: &str) -> Option<Range<usize>> {
    const KEY: &str = "\"request_id\":";
    let start = if fields.starts_with(KEY) {
        KEY.len()
    } else {
        fields.find(",\"request_id\":")? + 1 + KEY.len()
    };
    let bytes = fields.as_bytes();
    let end = if bytes.get(start) == Some(&b'"') {
        // A string: up to its closing quote. The next quote is found by memchr; only when it
        // is escaped (a backslash before it) does a byte-by-byte walk decide.
        let quote = start + 1 + fields[start + 1..].find('"')?;
        if bytes[quote - 1] != b'\\' {
            quote + 1
        } else {
            let mut i = start + 1;
            loop {
                match bytes.get(i)? {
                    b'\\' => i += 2,
                    b'"' => break i + 1,
                    _ => i += 1,
                }
            }
        }
    } else {
        // A number, boolean or null: up to the pair's end.
        bytes[start..]
            .iter()
            .position(|&b| b == b',')
            .map_or(bytes.len(), |len| start + len)
    };
    Some(start..end)
}

thread_local! {
    /// The current second as `YYYY-MM-DDTHH:MM:SS`, formatted once per second per thread.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `now` as tracing-subscriber prints it (RFC 3339, UTC, microseconds, `Z`), the date and time
/// of day formatted by humantime once a second and the microseconds by itoa.
fn write_timestamp(out: &mut String, now: std::time::SystemTime) {
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
    out.push('.');
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros);
    out.push_str(&"000000"[digits.len()..]);
    out.push_str(digits);
    out.push('Z');
}

/// Writes `"name":value` pairs, comma-separated.
struct JsonVisitor<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: fmt::Write> JsonVisitor<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Self {
            out,
            first,
            result: Ok(()),
        }
    }

    fn key(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_str(",")?;
        }
        write_json_str(self.out, field.name())?;
        self.out.write_str(":")
    }

    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl<W: fmt::Write> Visit for JsonVisitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| write_json_str(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.write_str("\"")?;
            write!(JsonEscaped(out), "{value:?}")?;
            out.write_str("\"")
        });
    }

    // Numbers through itoa and ryu (serde_json's own formatters): several times faster than
    // `core::fmt`'s, and the access line carries three of them.
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.pair(field, |out| {
            if value.is_finite() {
                write_f64(out, value)
            } else {
                out.write_str("null")
            }
        });
    }
}

/// A finite `value` as ryu prints it (the shortest text that reads back as `value`). Whole
/// thousandths below a billion, as the access line's `latency_ms` always is, take a shortcut:
/// for them that text is the decimal itself, trailing zeros trimmed (`5.12`, `3.0`).
fn write_f64(out: &mut impl fmt::Write, value: f64) -> fmt::Result {
    let thousandths = (value * 1000.0).round();
    if (0.0..1e12).contains(&thousandths) && thousandths / 1000.0 == value {
        let n = thousandths as u64;
        let (whole, mut frac) = (n / 1000, n % 1000);
        out.write_str(itoa::Buffer::new().format(whole))?;
        out.write_str(".")?;
        let mut digits = 3;
        while frac % 10 == 0 && digits > 1 {
            frac /= 10;
            digits -= 1;
        }
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(frac);
        out.write_str(&"00"[..digits - text.len()])?;
        return out.write_str(text);
    }
    out.write_str(ryu::Buffer::new().format_finite(value))
}

/// `value` as a JSON string literal.
fn write_json_str(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_str("\"")?;
    JsonEscaped(out).write_str(value)?;
    out.write_str("\"")
}

/// Whether a byte must be escaped inside a JSON string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte must be escaped, eight bytes per step: a byte of a word is zero (or below
/// 0x20) exactly when the high bit of `(w - 0x01…) & !w` (or `(w - 0x20…) & !w`) survives for
/// some byte, and a quote or a backslash is a zero after an XOR with that byte repeated.
fn any_needs_escape(bytes: &[u8]) -> bool {
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
    words.remainder().iter().any(|&b| needs_escape(b))
}

/// A `fmt::Write` adapter that escapes what passes through for the inside of a JSON string,
/// so `Debug` output streams into the line without an intermediate `String`.
struct JsonEscaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        // Most text needs no escaping: find that out in one scan and copy it whole.
        if !any_needs_escape(bytes) {
            return self.0.write_str(s);
        }
        let mut clean_from = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &str = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[clean_from..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            clean_from = i + 1;
        }
        self.0.write_str(&s[clean_from..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_request_id_only_at_a_pair_start() {
        let value = |fields: &str| request_id_in(fields).map(|r| fields[r].to_owned());
        assert_eq!(
            value(r#""request_id":"a-1","method":"GET""#).as_deref(),
            Some(r#""a-1""#)
        );
        assert_eq!(
            value(r#""method":"GET","request_id":"b""#).as_deref(),
            Some(r#""b""#)
        );
        assert_eq!(value(r#""request_id":7,"x":1"#).as_deref(), Some("7"));
        assert_eq!(value(r#""x":1,"request_id":true"#).as_deref(), Some("true"));
        assert_eq!(
            value(r#""request_id":"q\"x\\","x":1"#).as_deref(),
            Some(r#""q\"x\\""#)
        );
        // Inside a string the key's quotes are escaped: not a key.
        assert_eq!(value(r#""note":"{\"request_id\":\"no\"}""#), None);
        assert_eq!(value(r#""name":"request_id""#), None);
        assert_eq!(value(""), None);
    }

    #[test]
    fn timestamps_print_like_tracing_subscriber() {
        let base = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
        for micros in [0, 7, 999_999, 123_456, 1_000_000, 86_400_000_001] {
            let now = base + std::time::Duration::from_micros(micros);
            let mut out = String::new();
            write_timestamp(&mut out, now);
            assert_eq!(out, humantime::format_rfc3339_micros(now).to_string());
        }
    }

    #[test]
    fn the_word_scan_agrees_with_the_byte_test() {
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
            let mut out = String::new();
            write_f64(&mut out, value).unwrap();
            assert_eq!(out, ryu::Buffer::new().format_finite(value), "{value}");
        }
    }

    #[test]
    fn escapes_what_json_requires() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}
