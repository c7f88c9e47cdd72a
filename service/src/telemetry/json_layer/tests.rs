//! The layer's own contract, in process: what the filter lets through, scopes that skip the
//! spans it disabled, recorded fields, close lines for all spans but the untimed one, names
//! that need escaping.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt;

use super::JsonLayer;

/// Runs `emit` under a subscriber with only the JSON layer for `rust_log` (the root span named
/// `request` untimed), and returns the lines it wrote, parsed.
fn lines(rust_log: &str, emit: impl FnOnce()) -> Vec<Value> {
    let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = captured.clone();
    let writer = move || Captured(sink.clone());
    let layer = JsonLayer::new(writer, rust_log, "request").unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), emit);
    let bytes = captured.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect()
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn messages(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|line| line["fields"]["message"].as_str().unwrap())
        .collect()
}

#[test]
fn lines_carry_the_scope_and_the_root_request_id() {
    let lines = lines("info", || {
        let root = tracing::info_span!("request", request_id = "r-1", method = "GET");
        let _root = root.enter();
        let handler = tracing::info_span!("handler", note = "a\"b");
        let _handler = handler.enter();
        tracing::info!(n = 3_u64, ok = true, "inside");
    });
    let inside = &lines[0];
    assert_eq!(inside["level"], "INFO");
    assert_eq!(inside["target"], module_path!());
    assert_eq!(inside["fields"]["message"], "inside");
    assert_eq!(inside["fields"]["n"], 3);
    assert_eq!(inside["fields"]["ok"], true);
    assert_eq!(inside["request_id"], "r-1");
    assert_eq!(inside["spans"][0]["name"], "request");
    assert_eq!(inside["spans"][0]["method"], "GET");
    assert_eq!(inside["spans"][1]["note"], "a\"b");
    assert_eq!(inside["span"], inside["spans"][1]);
    assert_eq!(inside["spans"].as_array().unwrap().len(), 2);
}

#[test]
fn a_line_outside_any_span_has_no_scope_and_no_request_id() {
    let lines = lines("info", || tracing::warn!("alone"));
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["fields", "level", "target", "timestamp"]);
}

#[test]
fn spans_the_filter_disables_are_left_out_of_the_scope() {
    let lines = lines("info", || {
        let root = tracing::info_span!("request", request_id = "r-2");
        let _root = root.enter();
        let hidden = tracing::debug_span!("hidden", secret = 1);
        let _hidden = hidden.enter();
        tracing::info!("inner");
        tracing::debug!("not shown");
    });
    assert_eq!(messages(&lines), ["inner"]);
    assert_eq!(lines[0]["spans"].as_array().unwrap().len(), 1);
    assert_eq!(lines[0]["span"]["name"], "request");
}

#[test]
fn recorded_fields_are_appended_and_a_late_request_id_is_found() {
    let lines = lines("info", || {
        let root = tracing::info_span!(
            "request",
            method = "GET",
            request_id = tracing::field::Empty
        );
        root.record("request_id", "late-1");
        let _root = root.enter();
        tracing::info!("after");
    });
    assert_eq!(lines[0]["request_id"], "late-1");
    assert_eq!(lines[0]["span"]["method"], "GET");
    assert_eq!(lines[0]["span"]["request_id"], "late-1");
}

#[test]
fn every_span_but_the_untimed_one_closes_with_its_timings() {
    let lines = lines("info", || {
        let root = tracing::info_span!("request", request_id = "r-3");
        let _root = root.enter();
        let handler = tracing::info_span!("handler");
        handler.in_scope(|| std::thread::sleep(std::time::Duration::from_millis(20)));
        drop(handler);
    });
    assert_eq!(messages(&lines), ["close"]);
    let close = &lines[0];
    assert_eq!(close["span"]["name"], "handler");
    assert_eq!(close["request_id"], "r-3");
    let busy = close["fields"]["time.busy"].as_str().unwrap();
    assert!(busy.ends_with("ms"), "{busy}");
    assert!(
        busy.trim_end_matches("ms").parse::<f64>().unwrap() >= 20.0,
        "{busy}"
    );
    assert!(close["fields"]["time.idle"].is_string());
}

#[test]
fn span_directives_in_rust_log_enable_what_they_name() {
    let lines = lines("warn,[work]=debug", || {
        tracing::info!("outside");
        let work = tracing::info_span!("work");
        work.in_scope(|| tracing::debug!("inside"));
    });
    // The span the directive names is enabled too, so it closes with a line of its own.
    assert_eq!(messages(&lines), ["inside", "close"]);
    assert_eq!(lines[0]["span"]["name"], "work");
}

#[test]
fn a_timed_span_still_open_when_another_closes_keeps_its_timings() {
    let lines = lines("info", || {
        let outer = tracing::info_span!("outer");
        let first = tracing::info_span!(parent: &outer, "first");
        first.in_scope(|| {});
        drop(first);
        // `outer` is the only timed span open now; a miscount would leave it untimed.
        outer.in_scope(|| std::thread::sleep(std::time::Duration::from_millis(20)));
        drop(outer);
        let later = tracing::info_span!("later");
        later.in_scope(|| {});
    });
    assert_eq!(messages(&lines), ["close", "close", "close"]);
    let names: Vec<&str> = lines
        .iter()
        .map(|line| line["span"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "outer", "later"]);
    let busy = lines[1]["fields"]["time.busy"].as_str().unwrap();
    assert!(busy.ends_with("ms"), "{busy}");
}

#[test]
fn names_that_need_escaping_are_escaped() {
    let lines = lines("info", || {
        let span = tracing::info_span!("a \"quoted\" span", request_id = "r-4");
        let _span = span.enter();
        tracing::info!(target: "odd\\target", { "we\"ird" = 1_u64, plain = 2_u64 }, "named");
        tracing::info!(target: "odd\\target", { "we\"ird" = 3_u64 }, "again");
    });
    assert_eq!(messages(&lines), ["named", "again", "close"]);
    assert_eq!(lines[2]["span"]["name"], "a \"quoted\" span");
    for (line, value) in lines.iter().zip([1, 3]) {
        assert_eq!(line["target"], "odd\\target");
        assert_eq!(line["fields"]["we\"ird"], value);
        assert_eq!(line["span"]["name"], "a \"quoted\" span");
        assert_eq!(line["request_id"], "r-4");
    }
    assert_eq!(lines[0]["fields"]["plain"], 2);
}

#[test]
fn a_field_recorded_into_a_span_without_fields_comes_before_its_name() {
    let lines = lines("info", || {
        let root = tracing::info_span!("request", request_id = tracing::field::Empty);
        let _root = root.enter();
        tracing::info!("before");
        root.record("request_id", "late-2");
        tracing::info!("after");
    });
    assert_eq!(lines[0]["span"], serde_json::json!({"name": "request"}));
    assert!(lines[0].get("request_id").is_none());
    assert_eq!(
        lines[1]["span"],
        serde_json::json!({"request_id": "late-2", "name": "request"})
    );
    assert_eq!(lines[1]["request_id"], "late-2");
}

#[test]
fn a_bare_level_decides_alone_and_target_directives_still_apply() {
    let lines_at = |rust_log| {
        lines(rust_log, || {
            tracing::trace!("trace");
            tracing::debug!("debug");
            tracing::info!(target: "noisy", "noisy info");
            tracing::warn!("warn");
        })
    };
    assert_eq!(
        messages(&lines_at("debug")),
        ["debug", "noisy info", "warn"]
    );
    assert_eq!(messages(&lines_at("WARN")), ["warn"]);
    assert_eq!(messages(&lines_at("debug,noisy=off")), ["debug", "warn"]);
}
