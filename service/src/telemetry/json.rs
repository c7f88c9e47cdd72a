//! The JSON line format, written for speed with the field layout of tracing-subscriber's
//! `fmt::layer().json()` (so dashboards, Alloy and users' tools see the same keys):
//!
//! ```json
//! {"timestamp":"…","level":"INFO","fields":{"message":"…",…},"target":"…","request_id":"…","span":{…,"name":"…"},"spans":[{…},…]}
//! ```
//!
//! plus one key of its own: inside a request, the outermost `request_id` of the span scope (the
//! request span's) is copied to the top level, so log tools find it without digging into `span`
//! (tracing-subscriber nests span fields; tracing#1531). Outside a request there is none.
//!
//! **Why not `fmt().json()`.** tracing-subscriber's JSON format stores each span's fields as a
//! JSON *string*; every `Span::record` parses it, rebuilds a map and serialises it again, and
//! every event re-parses each stored span to print `span` and `spans` (its source calls this
//! far from efficient; `docs/benchmarks.md` has the profile). Here a span's fields are
//! serialised once, as a ready-to-paste JSON fragment (`"k":v,"k2":v2`), and an event copies
//! the fragments verbatim. **Why not the `json-subscriber` crate**, which is built for this:
//! version 0.2 has no span close events, and the lab needs each handler span's close line
//! with `time.busy` and `time.idle`. Keeping tracing-subscriber's `fmt::Layer` and replacing
//! only its two formatting traits keeps those close events, the timings and the writers.
//! (The close lines come from [`super::close_events`], which skips the root span `request`:
//! its access line already reports the request.)

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
    registry::{LookupSpan, SpanRef},
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
            // The timestamp as tracing-subscriber prints it (RFC 3339, UTC, microseconds),
            // formatted by humantime in one write instead of a dozen.
            let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
            write!(out, "{{\"timestamp\":\"{now}\",\"level\":\"")?;
            out.push_str(meta.level().as_str());
            out.push_str("\",\"fields\":{");
            let mut visitor = JsonVisitor::new(out, true);
            event.record(&mut visitor);
            visitor.result?;
            out.push_str("},\"target\":");
            write_json_str(out, meta.target())?;
            // `span` is the innermost span (for a close event: the span closing), `spans` the
            // whole scope from the root, as tracing-subscriber prints them.
            if let Some(leaf) = ctx.event_scope().and_then(|mut scope| scope.next()) {
                let after_target = out.len();
                out.push_str(",\"span\":");
                write_span(out, &leaf)?;
                out.push_str(",\"spans\":[");
                let mut request_id = None;
                for (i, span) in leaf.scope().from_root().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let start = out.len();
                    write_span(out, &span)?;
                    if request_id.is_none() {
                        request_id = request_id_in(&out[start..])
                            .map(|value| start + value.start..start + value.end);
                    }
                }
                out.push(']');
                // The outermost `request_id` of the scope (the request's), also at the top level.
                if let Some(value) = request_id {
                    insert_request_id(out, after_target, value);
                }
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
fn write_span<S>(out: &mut String, span: &SpanRef<'_, S>) -> fmt::Result
where
    S: for<'a> LookupSpan<'a>,
{
    out.push('{');
    if let Some(fields) = span.extensions().get::<FormattedFields<JsonFields>>() {
        if !fields.fields.is_empty() {
            out.push_str(&fields.fields);
            out.push(',');
        }
    }
    out.push_str("\"name\":");
    write_json_str(out, span.name())?;
    out.push('}');
    Ok(())
}

/// The key written at the top level of every line inside a request.
const REQUEST_ID: &str = "request_id";

/// Where the value of a `"request_id":…` pair is in a span's `{…}` as [`write_span`] wrote it.
/// A key is found only at a pair's start (after `{` or `,`): inside a JSON string every `"` is
/// escaped, so `{"` and `,"` never occur there.
fn request_id_in(span: &str) -> Option<Range<usize>> {
    let bytes = span.as_bytes();
    let key = bytes.windows(REQUEST_ID.len() + 3).position(|w| {
        matches!(w[0], b'{' | b',')
            && w[1] == b'"'
            && &w[2..w.len() - 1] == REQUEST_ID.as_bytes()
            && w[w.len() - 1] == b'"'
    })?;
    let start = key + REQUEST_ID.len() + 4; // past `,"request_id":`
    if bytes.get(start - 1) != Some(&b':') {
        return None;
    }
    let end = if bytes.get(start) == Some(&b'"') {
        // A string: up to its closing quote, skipping escaped characters.
        let mut i = start + 1;
        loop {
            match bytes.get(i)? {
                b'\\' => i += 2,
                b'"' => break i + 1,
                _ => i += 1,
            }
        }
    } else {
        // A number, boolean or null: up to the pair's end.
        start
            + bytes[start..]
                .iter()
                .position(|&b| b == b',' || b == b'}')?
    };
    Some(start..end)
}

/// Inserts `,"request_id":<value>` at `at`; `value` is a range of `out` after `at`.
fn insert_request_id(out: &mut String, at: usize, value: Range<usize>) {
    let mut pair = [0u8; 128];
    let key = b",\"request_id\":";
    let len = key.len() + value.len();
    if len <= pair.len() {
        // Copied through the stack: `out` cannot lend a part of itself to its own insert.
        pair[..key.len()].copy_from_slice(key);
        pair[key.len()..len].copy_from_slice(&out.as_bytes()[value]);
        let pair = std::str::from_utf8(&pair[..len]).expect("copied from a str at char boundaries");
        out.insert_str(at, pair);
    } else {
        let pair = format!(",\"{REQUEST_ID}\":{}", &out[value]);
        out.insert_str(at, &pair);
    }
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
                out.write_str(ryu::Buffer::new().format_finite(value))
            } else {
                out.write_str("null")
            }
        });
    }
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

/// A `fmt::Write` adapter that escapes what passes through for the inside of a JSON string,
/// so `Debug` output streams into the line without an intermediate `String`.
struct JsonEscaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        // Most text needs no escaping: find that out in one scan and copy it whole. The scan
        // does not stop early, so the compiler turns it into vector compares.
        if !bytes
            .iter()
            .fold(false, |found, &b| found | needs_escape(b))
        {
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
        let value = |span: &str| request_id_in(span).map(|r| span[r].to_owned());
        assert_eq!(
            value(r#"{"request_id":"a-1","name":"request"}"#).as_deref(),
            Some(r#""a-1""#)
        );
        assert_eq!(
            value(r#"{"method":"GET","request_id":"b","name":"x"}"#).as_deref(),
            Some(r#""b""#)
        );
        assert_eq!(
            value(r#"{"request_id":7,"name":"x"}"#).as_deref(),
            Some("7")
        );
        assert_eq!(
            value(r#"{"request_id":"q\"x\\","name":"x"}"#).as_deref(),
            Some(r#""q\"x\\""#)
        );
        // Inside a string the key's quotes are escaped: not a key.
        assert_eq!(value(r#"{"note":"{\"request_id\":\"no\"}","name":"x"}"#), None);
        assert_eq!(value(r#"{"name":"request_id"}"#), None);
        assert_eq!(value(r#"{"name":"request"}"#), None);
    }

    #[test]
    fn inserts_the_top_level_pair_of_any_length() {
        for id in ["\"short\"".to_owned(), format!("\"{}\"", "x".repeat(200))] {
            let mut out = format!(r#"{{"target":"t","spans":[{{"request_id":{id}}}]}}"#);
            let at = out.find(",\"spans\"").unwrap();
            let value = request_id_in(&out[at + 10..]).map(|r| at + 10 + r.start..at + 10 + r.end);
            insert_request_id(&mut out, at, value.unwrap());
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(json["request_id"], json["spans"][0]["request_id"], "{out}");
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
