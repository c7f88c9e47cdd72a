//! The visitor's pairs and where it finds the `request_id`, and numbers as ryu prints them.

use tracing::field::Visit;

use super::{write_f64, write_u64, JsonVisitor, Line};

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
        let mut visitor = JsonVisitor::new(&mut out, true, true);
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
    let mut visitor = JsonVisitor::new(&mut out, false, true);
    visitor.record_u64(&request_id, 7);
    let range = visitor.request_id.take().unwrap();
    assert_eq!(
        (&text(&out)[range], text(&out)),
        ("7", r#","request_id":7"#)
    );
    let mut visitor = JsonVisitor::new(&mut out, false, true);
    visitor.record_str(&method, "request_id");
    assert_eq!(visitor.request_id, None);
}

/// A callsite for field names only; never registered.
struct Callsite;
static CALLSITE: Callsite = Callsite;
impl tracing::callsite::Callsite for Callsite {
    fn set_interest(&self, _: tracing::subscriber::Interest) {}
    fn metadata(&self) -> &tracing::Metadata<'_> {
        unimplemented!("not registered")
    }
}

#[test]
fn floats_print_like_ryu() {
    let mut values: Vec<f64> = (0..200_000).map(|n| n as f64 / 1000.0).collect();
    values.extend([
        0.1 + 0.2,
        -0.0,
        -1.5,
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
fn integers_print_like_itoa() {
    let mut values: Vec<u64> = (0..2_000).collect();
    values.extend([9_999, 10_000, 65_535, u64::MAX]);
    for value in values {
        let mut out = Line::default();
        write_u64(&mut out, value);
        assert_eq!(text(&out), itoa::Buffer::new().format(value), "{value}");
    }
}
