//! What the layer keeps on each span it enables: the span as the JSON object every line in it
//! prints, rendered once; and a line's scope, written from those objects.

use std::ops::Range;

use tracing::{field::Visit, Metadata, Subscriber};
use tracing_subscriber::registry::{LookupSpan, SpanRef};

use super::{timings::Timings, with_line};
use crate::telemetry::json::{names_are_plain, JsonVisitor, Line};

/// A span as `{"k":v,…,"name":"…"}`, where in it the `request_id` value is, and its timings if
/// it is timed.
pub(super) struct SpanJson {
    object: Line,
    /// Where the fields end (before `,"name"` or `"name"`): recorded fields go there.
    fields_end: usize,
    request_id: Option<Range<usize>>,
    pub timings: Option<Timings>,
}

impl SpanJson {
    /// The span of callsite `meta` with the fields `record` visits.
    pub fn new(
        meta: &'static Metadata<'static>,
        record: impl FnOnce(&mut dyn Visit),
        timings: Option<Timings>,
    ) -> Self {
        let plain_names = names_are_plain(meta);
        let mut object = Line::with_capacity(128);
        object.push_str("{");
        let mut visitor = JsonVisitor::new(&mut object, true, plain_names);
        record(&mut visitor);
        let request_id = visitor.request_id.take();
        let fields_end = object.len();
        object.push_str(if fields_end > 1 {
            ",\"name\":"
        } else {
            "\"name\":"
        });
        object.push_name(meta.name(), plain_names);
        object.push_str("}");
        Self {
            object,
            fields_end,
            request_id,
            timings,
        }
    }

    /// Appends the fields `record` visits (`Span::record`); a `request_id` found first is kept.
    pub fn record(
        &mut self,
        meta: &'static Metadata<'static>,
        record: impl FnOnce(&mut dyn Visit),
    ) {
        let first = self.fields_end == 1;
        let (added, request_id) = with_line(|out| {
            let mut visitor = JsonVisitor::new(out, first, names_are_plain(meta));
            record(&mut visitor);
            let request_id = visitor.request_id.take();
            (out.as_bytes().to_vec(), request_id)
        });
        let at = self.fields_end;
        self.object.insert_json_bytes(at, &added);
        self.fields_end += added.len();
        if first && !added.is_empty() {
            // `"name":…` had no comma before it; now it follows a field.
            self.object.insert_json_bytes(self.fields_end, b",");
        }
        self.request_id = self
            .request_id
            .take()
            .or(request_id.map(|range| range.start + at..range.end + at));
    }

    /// The whole object.
    pub fn object(&self) -> &[u8] {
        self.object.as_bytes()
    }

    /// The `request_id` value, if the span has one.
    pub fn request_id(&self) -> Option<&[u8]> {
        self.request_id
            .clone()
            .map(|range| &self.object.as_bytes()[range])
    }
}

/// `,"request_id":…,"spans":[{…},…],"span":{…}` for the enabled spans from the root to
/// `leaf`; the first one's `request_id` (the request's) goes to the top level. Nothing when
/// none is enabled.
pub(super) fn write_scope<S>(out: &mut Line, leaf: SpanRef<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut innermost: Option<Range<usize>> = None;
    let mut write = |span: &SpanRef<'_, S>| {
        let extensions = span.extensions();
        let Some(json) = extensions.get::<SpanJson>() else {
            return;
        };
        if innermost.is_none() {
            if let Some(value) = json.request_id() {
                out.push_str(",\"request_id\":");
                out.push_json_bytes(value);
            }
            out.push_str(",\"spans\":[");
        } else {
            out.push_str(",");
        }
        let start = out.len();
        out.push_json_bytes(json.object());
        innermost = Some(start..out.len());
    };
    // A span with no parent (a request's root span) has no scope to collect; otherwise the
    // parent found here starts the walk to the root, not looked up a second time.
    if let Some(parent) = leaf.parent() {
        parent.scope().from_root().for_each(|span| write(&span));
    }
    write(&leaf);
    if let Some(span) = innermost {
        out.push_str("],\"span\":");
        out.copy_within(span);
    }
}
