//! A model of what `deploy/alloy/config.alloy` does to one container and one line: the
//! `discovery.relabel` rules (keep, replace) on the container's discovery labels, then the
//! `loki.process` stages in order.
//!
//! It follows the semantics in Alloy's reference pages for these components. A stage or
//! action it does not model is a panic, not a pass: whoever adds one to the config must teach
//! the model, including whether it can drop a line.

use std::collections::BTreeMap;

use regex::Regex;

use crate::alloy::{Block, Value};

pub type Labels = BTreeMap<String, String>;

/// Where the entry's timestamp comes from after the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Timestamp {
    /// The line's own field, parsed (the value as written).
    FromLine(String),
    /// Kept as the source set it: Docker's timestamp for `loki.source.docker`.
    Source,
    /// Alloy's "fudge": the previous entry's time plus 1ns.
    Fudged,
    /// The line's own time moved `plus_ns` nanoseconds later: `action_on_duplicate_timestamp
    /// = "fudge"` on a line whose time equals the previous line's (see [`process_stream`]).
    Nudged { from_line: String, plus_ns: u64 },
}

/// One log entry as it would be pushed to Loki.
#[derive(Debug, Clone)]
pub struct Entry {
    pub line: String,
    pub labels: Labels,
    pub structured_metadata: Labels,
    pub timestamp: Timestamp,
}

/// `discovery.relabel` rules applied to a target; `None` if a rule drops it.
pub fn relabel(relabel_block: &Block, mut target: Labels) -> Option<Labels> {
    for rule in relabel_block.blocks_named("rule") {
        let sources: Vec<&str> = rule
            .attr("source_labels")
            .and_then(Value::as_list)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let separator = rule.str_attr("separator").unwrap_or(";");
        let value = sources
            .iter()
            .map(|s| target.get(*s).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join(separator);
        // Prometheus relabelling anchors the regex at both ends.
        let pattern = rule.str_attr("regex").unwrap_or("(.*)");
        let re = Regex::new(&format!("^(?:{pattern})$")).expect("relabel regex compiles");
        match rule.str_attr("action").unwrap_or("replace") {
            "keep" if !re.is_match(&value) => return None,
            "drop" if re.is_match(&value) => return None,
            "keep" | "drop" => {}
            "replace" => {
                if let Some(caps) = re.captures(&value) {
                    let target_label = rule
                        .str_attr("target_label")
                        .expect("a replace rule names its target_label");
                    let mut out = String::new();
                    caps.expand(rule.str_attr("replacement").unwrap_or("$1"), &mut out);
                    if out.is_empty() {
                        target.remove(target_label);
                    } else {
                        target.insert(target_label.to_string(), out);
                    }
                }
            }
            other => panic!("the pipeline model does not know relabel action {other:?}"),
        }
    }
    Some(target)
}

/// The labels `loki.source.docker` gives a container's entries: the relabelled target
/// without its internal `__` labels.
pub fn entry_labels(target: &Labels) -> Labels {
    target
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The names a `stage.labels` / `stage.structured_metadata` block sets.
pub fn stage_keys(process: &Block, stage: &str) -> Vec<String> {
    process
        .blocks_named(stage)
        .flat_map(|s| {
            s.attr("values")
                .and_then(Value::as_object)
                .map(|pairs| pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect()
}

/// Runs one line through the `loki.process` stages; `None` if a stage drops it.
pub fn process(process: &Block, labels: Labels, line: &str) -> Option<Entry> {
    let mut extracted: BTreeMap<String, String> = BTreeMap::new();
    let mut entry = Entry {
        line: line.to_string(),
        labels,
        structured_metadata: Labels::new(),
        timestamp: Timestamp::Source,
    };
    for stage in &process.blocks {
        match stage.name.as_str() {
            "stage.json" => {
                assert!(
                    stage.attr("source").is_none(),
                    "the model parses the line, not an extracted value"
                );
                let drop_malformed =
                    matches!(stage.attr("drop_malformed"), Some(Value::Bool(true)));
                // Alloy unmarshals into a map: anything but a JSON object is malformed.
                match serde_json::from_str::<serde_json::Value>(line) {
                    Ok(doc @ serde_json::Value::Object(_)) => {
                        for (name, path) in json_expressions(stage) {
                            let expr = jmespath::compile(&path).unwrap_or_else(|e| {
                                panic!("JMESPath {path:?} does not compile: {e}")
                            });
                            let found = expr.search(&doc).expect("JMESPath search runs");
                            let found = serde_json::to_value(&*found).expect("result serialises");
                            if let Some(text) = extracted_string(&found) {
                                extracted.insert(name, text);
                            }
                        }
                    }
                    _ if drop_malformed => return None,
                    _ => {}
                }
            }
            "stage.timestamp" => {
                let source = stage.str_attr("source").expect("timestamp source");
                let format = stage.str_attr("format").expect("timestamp format");
                assert!(
                    matches!(format, "RFC3339" | "RFC3339Nano"),
                    "the model parses RFC3339 timestamps only, not {format:?}"
                );
                assert!(
                    matches!(
                        stage.str_attr("action_on_duplicate_timestamp"),
                        None | Some("fudge" | "keep")
                    ),
                    "action_on_duplicate_timestamp is \"fudge\" or \"keep\""
                );
                let parsed = extracted
                    .get(source)
                    .filter(|v| humantime::parse_rfc3339(v).is_ok());
                entry.timestamp = match (parsed, stage.str_attr("action_on_failure")) {
                    (Some(v), _) => Timestamp::FromLine(v.clone()),
                    (None, Some("skip")) => Timestamp::Source,
                    (None, None | Some("fudge")) => Timestamp::Fudged,
                    (None, Some(other)) => panic!("unknown action_on_failure {other:?}"),
                };
            }
            "stage.labels" | "stage.structured_metadata" => {
                assert!(
                    stage.attr("regex").is_none(),
                    "the model does not read `regex`"
                );
                let values = stage
                    .attr("values")
                    .and_then(Value::as_object)
                    .unwrap_or(&[]);
                for (name, from) in values {
                    let from = from.as_str().filter(|s| !s.is_empty()).unwrap_or(name);
                    if let Some(v) = extracted.get(from) {
                        if stage.name == "stage.labels" {
                            entry.labels.insert(name.clone(), v.clone());
                        } else {
                            // "If you add labels to structured metadata, the labels are
                            // removed from the label map."
                            entry.labels.remove(name);
                            entry.structured_metadata.insert(name.clone(), v.clone());
                        }
                    }
                }
            }
            "stage.static_labels" => {
                for (name, v) in stage
                    .attr("values")
                    .and_then(Value::as_object)
                    .unwrap_or(&[])
                {
                    let v = v.as_str().expect("static label values are strings");
                    entry.labels.insert(name.clone(), v.to_string());
                }
            }
            "stage.label_keep" | "stage.label_drop" => {
                let names: Vec<&str> = stage
                    .attr("values")
                    .and_then(Value::as_list)
                    .map(|l| l.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let keep = stage.name == "stage.label_keep";
                entry
                    .labels
                    .retain(|k, _| names.contains(&k.as_str()) == keep);
            }
            other => panic!(
                "the pipeline model does not know `{other}`: teach it (and whether it can drop \
                 a line) in labcheck/src/pipeline.rs"
            ),
        }
    }
    Some(entry)
}

/// Runs the lines of one stream, in order, through a freshly started pipeline, with the state
/// `stage.timestamp` keeps between lines (Alloy's `timestamp.go`): with
/// `action_on_duplicate_timestamp = "fudge"` (the default) a line whose own time equals the
/// previous line's gets the previous entry's time + 1ns; "keep" leaves it. A restarted Alloy
/// starts with no such state.
pub fn process_stream(process_block: &Block, labels: &Labels, lines: &[&str]) -> Vec<Entry> {
    let fudge = process_block.blocks_named("stage.timestamp").any(|s| {
        s.str_attr("action_on_duplicate_timestamp")
            .unwrap_or("fudge")
            == "fudge"
    });
    // The previous line's own time and how far its entry was moved.
    let mut previous: Option<(std::time::SystemTime, u64)> = None;
    let mut out = Vec::new();
    for line in lines {
        let Some(mut entry) = process(process_block, labels.clone(), line) else {
            continue;
        };
        if let Timestamp::FromLine(own) = &entry.timestamp {
            let time = humantime::parse_rfc3339(own).expect("checked by the stage");
            let plus_ns = match previous {
                Some((prev, moved)) if fudge && prev == time => moved + 1,
                _ => 0,
            };
            if plus_ns > 0 {
                entry.timestamp = Timestamp::Nudged {
                    from_line: own.clone(),
                    plus_ns,
                };
            }
            previous = Some((time, plus_ns));
        }
        out.push(entry);
    }
    out
}

/// The expressions of one `stage.json` block: (extracted name, JMESPath), with an empty path
/// meaning "the same as the name", as Alloy reads it.
fn json_expressions(stage: &Block) -> Vec<(String, String)> {
    stage
        .attr("expressions")
        .and_then(Value::as_object)
        .expect("stage.json has an expressions object")
        .iter()
        .map(|(name, path)| {
            let path = path.as_str().expect("a JMESPath expression is a string");
            let path = if path.is_empty() { name } else { path };
            (name.clone(), path.to_string())
        })
        .collect()
}

/// How Alloy turns an extracted JSON value into a label or metadata value: strings as they
/// are, numbers in their shortest decimal form, booleans as words, null as nothing, arrays
/// and objects as JSON.
fn extracted_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => {
            Some(n.as_f64().map_or_else(|| n.to_string(), |f| f.to_string()))
        }
        serde_json::Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}
