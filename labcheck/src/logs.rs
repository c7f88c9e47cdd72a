//! Checks on the api fleet's JSON log lines (`docker compose logs --no-log-prefix api`), alone
//! or against a loadgen report: the slowest requests are findable by request_id, and the
//! watchdog names every blocking `/config/sync` request while it blocks.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
    time::{Duration, SystemTime},
};

use loadgen::report::Report;
use regex::Regex;
use serde_json::Value;

use crate::Verdict;

/// The function the culprit stacks of `/config/sync` must name.
pub const CULPRIT: &str = "read_config_blocking";

/// `docker compose logs` writes an erase-line sequence before each line even with
/// `--no-color` when its output is not a terminal.
static ANSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("valid regex"));

/// One log line without terminal escapes, parsed as JSON; `None` for a blank line,
/// `Some(Err(()))` for a line that is not JSON.
fn parse(raw: &str) -> Option<Result<Value, ()>> {
    let line = ANSI.replace_all(raw, "");
    let line = line.trim();
    (!line.is_empty()).then(|| serde_json::from_str(line).map_err(|_| ()))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_str()
}

/// Every request in loadgen's slowest list that a release replica answered has its
/// request_id in the fleet's logs (on the current span, the event's fields, the line itself
/// or any span of the line), and every log line is JSON.
pub fn slowest(report: &Report, logs: &str) -> Verdict {
    let flavors: HashMap<&str, Option<&str>> = report
        .instances
        .iter()
        .map(|i| (i.instance.as_str(), i.flavor.as_deref()))
        .collect();
    let wanted: Vec<_> = report
        .slowest
        .iter()
        .filter(|s| {
            s.status.is_some()
                && flavors.get(s.instance.as_str()).copied().flatten() == Some("release")
        })
        .collect();
    let (mut logged, mut lines, mut bad) = (HashSet::new(), 0, 0);
    for line in logs.lines().filter_map(parse) {
        let Ok(line) = line else {
            bad += 1;
            continue;
        };
        lines += 1;
        let spans = line.get("spans").and_then(Value::as_array);
        let ids = [
            str_at(&line, &["span", "request_id"]),
            str_at(&line, &["fields", "request_id"]),
            str_at(&line, &["request_id"]),
        ]
        .into_iter()
        .chain(
            spans
                .into_iter()
                .flatten()
                .map(|s| str_at(s, &["request_id"])),
        );
        logged.extend(ids.flatten().filter(|id| !id.is_empty()).map(str::to_owned));
    }
    let mut seen = vec![format!(
        "  {lines} JSON log lines ({bad} not JSON), {} distinct request_ids",
        logged.len()
    )];
    if bad > 0 {
        return Verdict::fail(seen, format!("{bad} api log lines are not JSON"));
    }
    if wanted.is_empty() {
        return Verdict::fail(
            seen,
            "loadgen's slowest list has no request answered by an api replica",
        );
    }
    let mut missing = 0;
    for s in &wanted {
        let found = logged.contains(&s.request_id);
        missing += usize::from(!found);
        seen.push(format!(
            "  {}  {:<12} {:8.1} ms  {}",
            s.request_id,
            s.route.name(),
            s.latency_ms,
            if found { "logged" } else { "missing" }
        ));
    }
    if missing > 0 {
        return Verdict::fail(
            seen,
            format!("{missing} of the slowest request_ids are not in the api logs"),
        );
    }
    let summary = format!(
        "ok: all {} slowest fleet request_ids are in the api replicas' logs",
        wanted.len()
    );
    Verdict::pass(seen, summary)
}

/// A `worker blocked` line: the handler it names, when, and its stack.
struct Warning {
    handler: Option<String>,
    at: SystemTime,
    stack: String,
}

/// Milliseconds from `from` to `to`, negative when `to` is earlier.
fn millis_between(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

/// The first `max` characters of a stack, on one line.
fn one_line(stack: &str, max: usize) -> String {
    stack
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

/// Every `/config/sync` request (its handler's `loading config` line) has exactly one
/// `worker blocked` line naming `config_sync` and its request_id, written at most
/// `max_delay` after `loading config` (so while it blocks), and at least 80 % of those lines
/// (and at least one) carry a stack naming [`CULPRIT`]. A warning in a process's first
/// second may precede the stack capture's start-up self-test, hence not all of them.
pub fn watchdog(logs: &str, max_delay: Duration) -> Verdict {
    let mut loading: Vec<(String, SystemTime)> = Vec::new();
    let mut blocked: HashMap<Option<String>, Vec<Warning>> = HashMap::new();
    for line in logs.lines().filter_map(parse).filter_map(Result::ok) {
        let message = str_at(&line, &["fields", "message"]);
        let is_loading = message == Some("loading config")
            && str_at(&line, &["span", "name"]) == Some("config_sync");
        if !is_loading && message != Some("worker blocked") {
            continue;
        }
        let Some(at) = str_at(&line, &["timestamp"]).and_then(|t| humantime::parse_rfc3339(t).ok())
        else {
            return Verdict::fail(
                Vec::new(),
                format!("a log line has no RFC 3339 timestamp: {line}"),
            );
        };
        if is_loading {
            let rid = str_at(&line, &["span", "request_id"]).unwrap_or_default();
            match loading.iter_mut().find(|(r, _)| r == rid) {
                Some(entry) => entry.1 = at,
                None => loading.push((rid.to_owned(), at)),
            }
        } else {
            let rid = str_at(&line, &["fields", "request_id"]).map(str::to_owned);
            blocked.entry(rid).or_default().push(Warning {
                handler: str_at(&line, &["fields", "handler"]).map(str::to_owned),
                at,
                stack: str_at(&line, &["fields", "stack"])
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    }
    if loading.is_empty() {
        return Verdict::fail(Vec::new(), "no /config/sync request in the api logs");
    }
    let mut delays = Vec::new();
    let mut stacks = Vec::new();
    for (rid, started) in &loading {
        let warnings = blocked
            .get(&Some(rid.clone()))
            .map_or(&[][..], Vec::as_slice);
        match warnings {
            [w] if w.handler.as_deref() == Some("config_sync") => {
                delays.push(millis_between(*started, w.at));
                stacks.push(w.stack.as_str());
            }
            _ => {
                let list: Vec<String> = warnings
                    .iter()
                    .map(|w| {
                        format!(
                            "{} at {}",
                            w.handler.as_deref().unwrap_or("(no handler)"),
                            humantime::format_rfc3339_micros(w.at)
                        )
                    })
                    .collect();
                return Verdict::fail(
                    Vec::new(),
                    format!(
                        "/config/sync request {rid} has {} watchdog warnings naming it, expected one naming config_sync: [{}]",
                        warnings.len(),
                        list.join(", ")
                    ),
                );
            }
        }
    }
    let (min, max) = delays
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| {
            (lo.min(*d), hi.max(*d))
        });
    let named: Vec<&str> = stacks
        .iter()
        .copied()
        .filter(|s| s.contains(CULPRIT))
        .collect();
    let seen = vec![
        format!(
            "  {} /config/sync requests, one `worker blocked` each, {min:.0}-{max:.0} ms after `loading config`",
            loading.len()
        ),
        format!(
            "  {} of {} warnings carry a stack naming {CULPRIT}, e.g. {}",
            named.len(),
            stacks.len(),
            named.first().map_or("(none)".to_owned(), |s| one_line(s, 160))
        ),
    ];
    if named.is_empty() || (named.len() as f64) < 0.8 * stacks.len() as f64 {
        let examples: Vec<String> = stacks
            .iter()
            .take(3)
            .map(|s| format!("[{}]", one_line(s, 160)))
            .collect();
        return Verdict::fail(
            seen,
            format!(
                "too few culprit stacks name {CULPRIT}: {}",
                examples.join(" ")
            ),
        );
    }
    let limit = max_delay.as_secs_f64() * 1000.0;
    if max > limit {
        return Verdict::fail(
            seen,
            format!("a warning came {max:.0} ms after the block began (limit {limit:.0} ms)"),
        );
    }
    Verdict::pass(
        seen,
        "ok: the release fleet's own logs name every blocking /config/sync request while it blocks",
    )
}

#[cfg(test)]
mod tests {
    use loadgen::report::Report;
    use serde_json::json;

    use super::*;
    use crate::report::fixtures::{instance, report, slow};

    fn report_with_slowest() -> Report {
        let mut r = report(vec![
            instance("a1", Some("release"), &[]),
            instance("canary", Some("canary"), &[]),
        ]);
        r.slowest = vec![
            slow("id-span", "a1", Some(200)),
            slow("id-field", "a1", Some(200)),
            // Not checked: answered by the canary, or not answered at all.
            slow("id-canary", "canary", Some(200)),
            slow("id-timeout", "a1", None),
        ];
        r
    }

    fn fleet_logs() -> String {
        [
            json!({"span": {"name": "orders", "request_id": "id-span"}, "fields": {"message": "done"}}),
            json!({"fields": {"message": "x", "request_id": "id-field"}}),
        ]
        .iter()
        .map(|l| format!("\x1b[2K{l}\n"))
        .collect()
    }

    #[test]
    fn slowest_finds_request_ids_on_spans_and_fields_past_terminal_escapes() {
        let v = slowest(&report_with_slowest(), &fleet_logs());
        assert!(v.passed(), "{v:?}");
        let logs = format!(
            "{}\n{}\n",
            json!({"spans": [{"request_id": "id-span"}]}),
            json!({"request_id": "id-field"})
        );
        assert!(slowest(&report_with_slowest(), &logs).passed());
    }

    #[test]
    fn slowest_fails_for_a_missing_request_id() {
        let mut r = report_with_slowest();
        r.slowest.push(slow("id-lost", "a1", Some(500)));
        assert_eq!(
            slowest(&r, &fleet_logs()).failure(),
            Some("1 of the slowest request_ids are not in the api logs")
        );
    }

    #[test]
    fn slowest_fails_for_a_line_that_is_not_json() {
        let logs = format!("{}panic at the disco\n", fleet_logs());
        assert_eq!(
            slowest(&report_with_slowest(), &logs).failure(),
            Some("1 api log lines are not JSON")
        );
    }

    #[test]
    fn slowest_fails_when_no_slow_request_was_answered_by_a_replica() {
        let mut r = report_with_slowest();
        r.slowest.retain(|s| s.instance == "canary");
        assert!(!slowest(&r, &fleet_logs()).passed());
    }

    const T0: &str = "2026-01-01T00:00:00.000000Z";

    fn at(ms: u64) -> String {
        let t = humantime::parse_rfc3339(T0).unwrap() + Duration::from_millis(ms);
        humantime::format_rfc3339_micros(t).to_string()
    }

    fn loading(rid: &str, ms: u64) -> Value {
        json!({"timestamp": at(ms), "fields": {"message": "loading config"},
               "span": {"name": "config_sync", "request_id": rid}})
    }

    fn blocked(rid: &str, handler: &str, ms: u64, stack: &str) -> Value {
        json!({"timestamp": at(ms), "fields": {"message": "worker blocked", "request_id": rid,
               "handler": handler, "stack": stack}})
    }

    fn lines(values: &[Value]) -> String {
        values.iter().map(|v| format!("{v}\n")).collect()
    }

    fn good_logs() -> Vec<Value> {
        (0..5)
            .flat_map(|i| {
                let rid = format!("r{i}");
                [
                    loading(&rid, i * 1000),
                    blocked(
                        &rid,
                        "config_sync",
                        i * 1000 + 120,
                        "read_config_blocking\n  config_read.rs:12",
                    ),
                ]
            })
            .collect()
    }

    const LIMIT: Duration = Duration::from_millis(250);

    #[test]
    fn watchdog_passes_with_one_timely_warning_per_request() {
        let v = watchdog(&lines(&good_logs()), LIMIT);
        assert!(v.passed(), "{v:?}");
        assert!(v.seen[0].contains("120-120 ms"), "{:?}", v.seen);
    }

    #[test]
    fn watchdog_fails_without_config_sync_requests() {
        let v = watchdog(&lines(&[blocked("r0", "config_sync", 0, "")]), LIMIT);
        assert_eq!(v.failure(), Some("no /config/sync request in the api logs"));
    }

    #[test]
    fn watchdog_fails_for_a_request_with_no_two_or_a_misnamed_warning() {
        let mut logs = good_logs();
        logs.remove(1);
        assert!(watchdog(&lines(&logs), LIMIT)
            .failure()
            .unwrap()
            .contains("r0 has 0 watchdog warnings"));
        let mut logs = good_logs();
        logs.push(blocked("r1", "config_sync", 1200, CULPRIT));
        assert!(watchdog(&lines(&logs), LIMIT)
            .failure()
            .unwrap()
            .contains("r1 has 2 watchdog warnings"));
        let mut logs = good_logs();
        logs[3] = blocked("r1", "orders", 1120, CULPRIT);
        assert!(watchdog(&lines(&logs), LIMIT)
            .failure()
            .unwrap()
            .contains("r1 has 1 watchdog warnings"));
    }

    #[test]
    fn watchdog_fails_for_a_late_warning() {
        let mut logs = good_logs();
        logs[1] = blocked("r0", "config_sync", 400, CULPRIT);
        assert_eq!(
            watchdog(&lines(&logs), LIMIT).failure(),
            Some("a warning came 400 ms after the block began (limit 250 ms)")
        );
    }

    #[test]
    fn watchdog_tolerates_one_stack_in_five_without_the_culprit_but_not_two() {
        let mut logs = good_logs();
        logs[1] = blocked("r0", "config_sync", 120, "");
        assert!(watchdog(&lines(&logs), LIMIT).passed());
        logs[3] = blocked("r1", "config_sync", 1120, "main\n  start_thread");
        let v = watchdog(&lines(&logs), LIMIT);
        assert!(
            v.failure().unwrap().starts_with("too few culprit stacks"),
            "{v:?}"
        );
        assert!(!v.failure().unwrap().contains('\n'));
    }
}
