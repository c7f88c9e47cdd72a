//! The JSON line format and the pieces that write it, for [`mod@super::json_layer`]. The keys are
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
    fmt::{self, Write as _},
    ops::Range,
};

use tracing::field::{Field, Visit};

mod escape;
mod plain;
#[cfg(test)]
mod tests;
mod timestamp;

pub use plain::names_are_plain;
pub use timestamp::{write_timestamp, Timing};

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

    /// Appends ASCII bytes (digits, punctuation).
    pub fn push_ascii(&mut self, text: &[u8]) {
        debug_assert!(text.is_ascii());
        self.0.extend_from_slice(text);
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

    /// Inserts JSON text written by a `Line` at `at`, a boundary between whole values.
    pub fn insert_json_bytes(&mut self, at: usize, json: &[u8]) {
        self.0.splice(at..at, json.iter().copied());
    }

    /// Appends JSON text written earlier by a `Line` (a span's object, a value in it).
    pub fn push_json_bytes(&mut self, json: &[u8]) {
        self.0.extend_from_slice(json);
    }

    /// Appends `value` as a JSON string literal.
    pub fn push_json_str(&mut self, value: &str) {
        self.0.reserve(value.len() + 2);
        self.0.push(b'"');
        self.push_escaped(value);
        self.0.push(b'"');
    }

    /// Appends one of a callsite's names (its target, its name) as a JSON string: copied when
    /// the callsite's names are `plain` ([`names_are_plain`]), escaped otherwise.
    #[inline]
    pub fn push_name(&mut self, name: &str, plain: bool) {
        if plain {
            self.push_plain_str(name);
        } else {
            self.push_json_str(name);
        }
    }

    /// Appends `text`, which needs no escaping, as a JSON string literal.
    fn push_plain_str(&mut self, text: &str) {
        self.0.reserve(text.len() + 2);
        self.0.push(b'"');
        self.0.extend_from_slice(text.as_bytes());
        self.0.push(b'"');
    }

    /// Appends `value` escaped for the inside of a JSON string: copied whole when it needs no
    /// escaping, as nearly all text here does.
    fn push_escaped(&mut self, value: &str) {
        if escape::any_needs_escape(value.as_bytes()) {
            escape::push_escaped_slowly(self, value);
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

/// Writes `"name":value` pairs, comma-separated, into a [`Line`]. A field's `Debug` that fails
/// leaves its value cut short, the line still JSON.
pub struct JsonVisitor<'a> {
    out: &'a mut Line,
    first: bool,
    /// Whether the field names need no escaping ([`names_are_plain`]).
    plain_names: bool,
    /// Where in `out` the value of a field named `request_id` was written, if one was.
    pub request_id: Option<Range<usize>>,
}

impl<'a> JsonVisitor<'a> {
    /// `first`: whether no pair precedes in `out` (no comma before the first one);
    /// `plain_names`: whether the fields' callsite has plain names, which are then copied as
    /// they are.
    pub fn new(out: &'a mut Line, first: bool, plain_names: bool) -> Self {
        Self {
            out,
            first,
            plain_names,
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
        if self.plain_names {
            self.out.push_str(name);
        } else {
            self.out.push_escaped(name);
        }
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
        if !self.plain_names || escape::any_needs_escape(value.as_bytes()) {
            return self.pair(field, |out| out.push_json_str(value));
        }
        // Nearly every string: `,"name":"value"` copied in pieces after one reservation. (The
        // general `pair` with the value's length reserved too costs about 100 instructions
        // more per access line: `docs/benchmarks.md`, issue 20.)
        let name = field.name();
        let out = &mut self.out.0;
        out.reserve(name.len() + value.len() + 6);
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":\"");
        let start = out.len() - 1;
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        if name == REQUEST_ID {
            self.request_id = Some(start..out.len());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.push_str("\"");
            let _ = write!(escape::Escaping(out), "{value:?}");
            out.push_str("\"");
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| out.push_str(itoa::Buffer::new().format(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| write_u64(out, value));
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

/// `value` in decimal, as itoa writes it. Below 1,000 (a status, the whole milliseconds of
/// nearly every latency) the digits are copied as one fixed-size piece, not through itoa's
/// buffer and a copy of unknown length.
pub(crate) fn write_u64(out: &mut Line, value: u64) {
    match value {
        0..=9 => out.push_ascii(&[digit(value)]),
        10..=99 => out.push_ascii(&[digit(value / 10), digit(value)]),
        100..=999 => out.push_ascii(&[digit(value / 100), digit(value / 10), digit(value)]),
        _ => out.push_str(itoa::Buffer::new().format(value)),
    }
}

/// The last decimal digit of `n`, as ASCII.
fn digit(n: u64) -> u8 {
    b'0' + (n % 10) as u8
}

/// A finite `value` as ryu prints it (the shortest text that reads back as `value`). Whole
/// thousandths below a billion, as the access line's `latency_ms` always is, take a shortcut:
/// for them that text is the decimal itself, trailing zeros trimmed (`5.12`, `3.0`).
pub(crate) fn write_f64(out: &mut Line, value: f64) {
    // Truncating `+ 0.5` rounds the non-negative values the shortcut takes, without a call.
    if value.is_sign_positive() && value < 1e9 {
        let thousandths = (value * 1000.0 + 0.5) as u64;
        if thousandths as f64 / 1000.0 == value {
            write_u64(out, thousandths / 1000);
            let frac = thousandths % 1000;
            // Fixed-size pieces, as in `write_u64`.
            match (frac % 100, frac % 10) {
                (0, _) => out.push_ascii(&[b'.', digit(frac / 100)]),
                (_, 0) => out.push_ascii(&[b'.', digit(frac / 100), digit(frac / 10)]),
                _ => out.push_ascii(&[b'.', digit(frac / 100), digit(frac / 10), digit(frac)]),
            }
            return;
        }
    }
    out.push_str(ryu::Buffer::new().format_finite(value));
}
