//! Grafana's provisioning and the "Tail latency lab" dashboard against grafana/queries.json,
//! the single source of the lab's LogQL, and against what the Alloy pipeline produces; and
//! the metric panels' meaning: guarded against parse errors, a rate or a window the title
//! names, the unit the query yields, no legend calculation that misreads a percentile.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value as Json;

use labcheck::pipeline;
use labcheck::repo::{self, DASHBOARD, DASHBOARD_PROVIDERS, DATASOURCES};

/// The keys of queries.json that are not dashboard panels: the data source uid, and the
/// request lookup used by loadgen's Explore links and the derived field.
const NOT_PANELS: &[&str] = &["datasource_uid", "request_by_id"];

fn dashboard() -> Json {
    repo::json(DASHBOARD)
}

fn panels() -> Vec<Json> {
    dashboard()["panels"]
        .as_array()
        .expect("the dashboard has a panels array")
        .clone()
}

/// Every (panel title, target) pair.
fn targets() -> Vec<(String, Json)> {
    panels()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| (title.clone(), t))
        })
        .collect()
}

fn provisioned_loki() -> serde_yaml::Value {
    let file = repo::yaml(DATASOURCES);
    let list = file["datasources"]
        .as_sequence()
        .expect("datasources is a list");
    assert_eq!(list.len(), 1, "one data source: Loki");
    list[0].clone()
}

/// Removes string literals so that names are read only from LogQL syntax.
fn strip_strings(expr: &str) -> String {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*"|`[^`]*`"#).expect("regex");
    strings.replace_all(expr, "\"\"").into_owned()
}

/// Label and metadata names a query reads: in the stream selector, label filters, `unwrap`
/// and `by (...)`. Names a `| json a="…"` stage of the query extracts itself are left out.
fn names_read(expr: &str) -> BTreeSet<String> {
    let bare = strip_strings(expr);
    let name = r"([A-Za-z_][A-Za-z0-9_]*)";
    let mut read = BTreeSet::new();
    let mut extracted = BTreeSet::new();
    let selector = Regex::new(r"\{([^}]*)\}").expect("regex");
    if let Some(sel) = selector.captures(&bare) {
        let matcher = Regex::new(&format!(r"{name}\s*(=~|!~|!=|=)")).expect("regex");
        read.extend(matcher.captures_iter(&sel[1]).map(|c| c[1].to_string()));
    }
    let filter = Regex::new(&format!(r"\|\s*{name}\s*(=~|!~|!=|==|>=|<=|=|>|<)")).expect("regex");
    read.extend(filter.captures_iter(&bare).map(|c| c[1].to_string()));
    let unwrap = Regex::new(&format!(r"unwrap\s+(?:[a-z_]+\()?{name}")).expect("regex");
    read.extend(unwrap.captures_iter(&bare).map(|c| c[1].to_string()));
    let by = Regex::new(r"by\s*\(([^)]*)\)").expect("regex");
    for c in by.captures_iter(&bare) {
        read.extend(
            c[1].split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    let json = Regex::new(r"\|\s*json\s+([^|\[]*)").expect("regex");
    let param = Regex::new(&format!(r"{name}\s*=")).expect("regex");
    for c in json.captures_iter(&bare) {
        extracted.extend(param.captures_iter(&c[1]).map(|p| p[1].to_string()));
    }
    read.retain(|n| !extracted.contains(n));
    read
}

fn is_metric(expr: &str) -> bool {
    expr.contains("rate(") || expr.contains("_over_time(")
}

#[test]
fn the_provisioned_datasource_is_loki_with_the_uid_queries_json_names() {
    let ds = provisioned_loki();
    assert_eq!(ds["type"].as_str(), Some("loki"));
    assert_eq!(
        ds["uid"].as_str(),
        Some(repo::query("datasource_uid").as_str())
    );
    assert_eq!(ds["url"].as_str(), Some("http://loki:3100"));
    assert_eq!(repo::yaml(DATASOURCES)["apiVersion"].as_u64(), Some(1));
}

#[test]
fn the_derived_field_turns_request_id_into_the_shared_request_by_id_query() {
    let ds = provisioned_loki();
    let fields = ds["jsonData"]["derivedFields"]
        .as_sequence()
        .expect("derivedFields is a list");
    let field = fields
        .iter()
        .find(|f| f["matcherType"].as_str() == Some("label"))
        .expect("a derived field that matches a label (structured metadata) by name");
    let name = Regex::new(field["matcherRegex"].as_str().expect("matcherRegex")).expect("regex");
    assert!(name.is_match("request_id"));
    assert_eq!(
        field["datasourceUid"].as_str(),
        ds["uid"].as_str(),
        "an internal link"
    );
    // Provisioning expands $VAR, so the file writes `$$` for a literal `$`.
    let url = field["url"].as_str().expect("url").replace("$$", "$");
    assert_eq!(
        url.replace("${__value.raw}", "${request_id}"),
        repo::query("request_by_id")
    );
}

#[test]
fn the_dashboard_provider_loads_files_and_refuses_ui_edits() {
    let file = repo::yaml(DASHBOARD_PROVIDERS);
    let providers = file["providers"]
        .as_sequence()
        .expect("providers is a list");
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    assert_eq!(p["type"].as_str(), Some("file"));
    assert_eq!(p["allowUiUpdates"].as_bool(), Some(false));
    assert!(p["options"]["path"]
        .as_str()
        .is_some_and(|s| s.starts_with('/')));
}

#[test]
fn the_dashboard_is_classic_json_titled_tail_latency_lab() {
    let d = dashboard();
    assert_eq!(d["title"].as_str(), Some("Tail latency lab"));
    assert!(d["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(d["templating"]["list"].is_array());
    assert!(!panels().is_empty());
    // Grafana 13's file provisioning refuses the v2 resource model.
    for v2_key in ["elements", "layout", "spec", "apiVersion", "kind"] {
        assert!(
            d.get(v2_key).is_none(),
            "v2 model key {v2_key:?} in the dashboard"
        );
    }
    let mut ids = BTreeSet::new();
    for p in panels() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id"
        );
        assert!(
            p["gridPos"]["w"].as_u64().is_some(),
            "{} has a gridPos",
            p["title"]
        );
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

#[test]
fn every_datasource_in_the_dashboard_is_the_provisioned_loki() {
    fn walk(v: &Json, found: &mut Vec<Json>) {
        match v {
            Json::Object(map) => {
                for (k, child) in map {
                    if k == "datasource" {
                        found.push(child.clone());
                    }
                    walk(child, found);
                }
            }
            Json::Array(items) => items.iter().for_each(|i| walk(i, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&dashboard(), &mut found);
    assert!(
        found.len() >= panels().len() + targets().len(),
        "every panel and target names one"
    );
    let uid = provisioned_loki()["uid"].as_str().expect("uid").to_string();
    for ds in found {
        assert_eq!(ds["uid"].as_str(), Some(uid.as_str()), "{ds}");
        assert_eq!(ds["type"].as_str(), Some("loki"), "{ds}");
    }
}

#[test]
fn every_panel_query_is_non_empty_and_taken_from_queries_json() {
    let queries = repo::queries();
    let mut used = BTreeSet::new();
    let targets = targets();
    assert!(!targets.is_empty());
    for (title, t) in &targets {
        let expr = t["expr"].as_str().unwrap_or_default();
        assert!(!expr.trim().is_empty(), "{title}: empty query");
        let (name, _) = queries
            .iter()
            .find(|(_, q)| q == expr)
            .unwrap_or_else(|| panic!("{title}: query not in queries.json: {expr}"));
        used.insert(name.clone());
        assert!(t["refId"].as_str().is_some(), "{title}: refId");
    }
    for (name, _) in &queries {
        assert!(
            used.contains(name) || NOT_PANELS.contains(&name.as_str()),
            "queries.json {name} is used by no panel"
        );
    }
}

#[test]
fn the_request_id_textbox_shows_every_line_when_empty_and_one_request_when_set() {
    let d = dashboard();
    let var = d["templating"]["list"]
        .as_array()
        .expect("templating list")
        .iter()
        .find(|v| v["name"] == "request_id")
        .expect("a request_id variable")
        .clone();
    assert_eq!(var["type"].as_str(), Some("textbox"));
    assert_eq!(var["query"].as_str(), Some(""), "empty by default");

    let uses: Vec<String> = targets()
        .iter()
        .filter_map(|(_, t)| t["expr"].as_str().map(str::to_string))
        .filter(|e| e.contains("${request_id") || e.contains("$request_id"))
        .collect();
    assert!(
        !uses.is_empty(),
        "a panel is filtered by the request_id variable"
    );
    // `| request_id=""` matches only lines WITHOUT request_id: an empty textbox must not
    // become an exact empty-value filter on request_id.
    let empty_exact = Regex::new(r#"request_id\s*(==?|=~)\s*(""|``)"#).expect("regex");
    for expr in uses {
        let empty = grafana_interpolate(&expr, "");
        assert!(
            !empty_exact.is_match(&empty),
            "unguarded when empty: {expr}"
        );
        if let Some(filter) = request_id_regex(&empty) {
            assert!(filter.is_match(""), "empty box, absent label: {expr}");
            assert!(filter.is_match("any-id"), "empty box, any id: {expr}");
        }
        let set = grafana_interpolate(&expr, "labcheck.7");
        let filter = request_id_regex(&set)
            .unwrap_or_else(|| panic!("does not filter request_id when set: {expr}"));
        assert!(filter.is_match("labcheck.7"), "the id itself: {expr}");
        assert!(filter.is_match("labcheck.7-b"), "a prefix: {expr}");
        assert!(!filter.is_match("labcheckx7"), "`.` is a dot: {expr}");
        assert!(!filter.is_match("other"), "{expr}");
    }
}

/// What Grafana sends for `expr` with the textbox set to `value`: `${request_id}` as typed
/// (the Loki data source escapes only `'`), `${request_id:regex}` regex-escaped by Grafana's
/// `regex` format (`escapeRegex`: `\ ^ $ * + ? . ( ) | [ ] { } /`).
fn grafana_interpolate(expr: &str, value: &str) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|c| {
            let special = "\\^$*+?.()|[]{}/".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect();
    expr.replace("${request_id:regex}", &escaped)
        .replace("${request_id}", value)
        .replace("$request_id", value)
}

/// The regex of a `request_id=~"…"` (or backtick) label filter, anchored as Loki anchors it.
fn request_id_regex(expr: &str) -> Option<Regex> {
    let filter =
        Regex::new(r#"request_id\s*=~\s*(?:"((?:[^"\\]|\\.)*)"|`([^`]*)`)"#).expect("regex");
    let caps = filter.captures(expr)?;
    let pattern = match (caps.get(1), caps.get(2)) {
        // A double-quoted LogQL string unescapes `\\` and `\"`.
        (Some(quoted), _) => quoted.as_str().replace("\\\\", "\\").replace("\\\"", "\""),
        (_, Some(raw)) => raw.as_str().to_string(),
        _ => unreachable!("one of the two alternatives matched"),
    };
    Some(Regex::new(&format!("^(?:{pattern})$")).expect("the label filter's regex compiles"))
}

#[test]
fn metric_queries_aggregate_so_structured_metadata_never_splits_the_series() {
    let grouping = Regex::new(r"by\s*\(([^)]*)\)").expect("regex");
    let self_grouped = Regex::new(r"\]\)\s*by\s*\(").expect("regex");
    let mut metric = 0;
    for (name, expr) in repo::queries() {
        if !is_metric(&expr) {
            continue;
        }
        metric += 1;
        let groups: Vec<String> = grouping
            .captures_iter(&expr)
            .map(|c| c[1].to_string())
            .collect();
        assert!(!groups.is_empty(), "{name} does not aggregate: {expr}");
        assert!(
            groups.iter().all(|g| !g.contains("request_id")),
            "{name} groups by request_id"
        );
        if expr.contains("rate(") || expr.contains("count_over_time(") {
            assert!(
                expr.starts_with("sum by ("),
                "{name}: rates and counts are summed"
            );
        } else {
            // Unwrapped range aggregations group themselves: `quantile_over_time(...) by (x)`.
            assert!(
                self_grouped.is_match(&expr),
                "{name} groups its unwrapped range aggregation"
            );
        }
    }
    assert!(
        metric >= 4,
        "the dashboard's latency, rate and blocking panels"
    );
}

#[test]
fn queries_read_only_labels_and_metadata_that_the_alloy_pipeline_produces() {
    let config = repo::alloy_config();
    let process = config.only("loki.process");
    let mut produced: BTreeSet<String> = ["service", "flavor", "instance", "__error__"]
        .into_iter()
        .map(str::to_string)
        .collect();
    produced.extend(pipeline::stage_keys(process, "stage.labels"));
    produced.extend(pipeline::stage_keys(process, "stage.structured_metadata"));
    for (name, expr) in repo::queries() {
        if name == "datasource_uid" {
            continue;
        }
        for read in names_read(&expr) {
            assert!(
                produced.contains(&read),
                "{name} reads `{read}`, which the Alloy pipeline never sets: {expr}"
            );
        }
    }
}

#[test]
fn the_name_reader_sees_selectors_filters_unwrap_and_grouping_but_not_strings() {
    let names = names_read(
        r#"sum by (route) (quantile_over_time(0.99, {service=~"a|b"} | json x="a.b" | x!="" | latency_ms!="{id}" | unwrap latency_ms [1m]) by (instance))"#,
    );
    let expected: BTreeSet<String> = ["route", "service", "latency_ms", "instance"]
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(names, expected);
}

/// The log pipeline of each range aggregation in `expr` (between the stream selector and the
/// `[range]`), split into stages, strings blanked: `["json span_name=\"\"", "busy >= 20ms"]`.
/// Line filters (`|= "…"`, `|~ "…"`) are left out: they never set `__error__`.
fn pipelines(expr: &str) -> Vec<(Vec<String>, String)> {
    let bare = strip_strings(expr);
    let range = Regex::new(r"\{[^{}]*\}([^\[]*)\[([^\]]*)\]").expect("regex");
    range
        .captures_iter(&bare)
        .map(|c| {
            let stages = c[1]
                .split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty() && !s.starts_with('=') && !s.starts_with('~'))
                .map(str::to_string)
                .collect();
            (stages, c[2].to_string())
        })
        .collect()
}

/// A stage that can fail on one line and set `__error__`: a parser, `unwrap`, a template,
/// or a numeric or duration comparison (`busy >= 20ms`, `status >= 500`).
fn can_fail(stage: &str) -> bool {
    let parser =
        Regex::new(r"^(json|logfmt|regexp|pattern|unpack|unwrap|line_format|label_format)\b")
            .expect("regex");
    let numeric = Regex::new(r"^[A-Za-z_]\w*\s*(>=|<=|==|!=|>|<)\s*-?[0-9]").expect("regex");
    parser.is_match(stage) || numeric.is_match(stage)
}

fn is_guard(stage: &str) -> bool {
    Regex::new(r#"^__error__\s*=\s*""$"#)
        .expect("regex")
        .is_match(stage)
}

#[test]
fn every_metric_query_drops_lines_that_failed_to_parse_after_its_last_parsing_stage() {
    // In a metric query Loki fails the whole query on the first sample with __error__; one
    // odd line would blank the panel.
    let mut checked = 0;
    for (name, expr) in repo::queries() {
        if !is_metric(&expr) {
            continue;
        }
        let found = pipelines(&expr);
        assert!(!found.is_empty(), "{name}: no range aggregation found");
        for (stages, _) in found {
            let guard = stages.iter().rposition(|s| is_guard(s));
            let last_risky = stages.iter().rposition(|s| can_fail(s));
            assert!(guard.is_some(), "{name} has no `| __error__=\"\"`: {expr}");
            assert!(
                guard > last_risky,
                "{name}: a stage after the guard can still fail: {expr}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "every metric panel's query");
}

#[test]
fn the_guard_check_sees_parsers_unwrap_and_comparisons_but_not_line_filters() {
    let expr = r#"sum by (a) (rate({s="x"} |= "busy >= 1ms" | json a="b" | busy >= 20ms | __error__="" | a!="" [1m]))"#;
    let found = pipelines(expr);
    assert_eq!(found.len(), 1);
    let (stages, range) = &found[0];
    assert_eq!(range, "1m");
    assert_eq!(
        stages,
        &[
            r#"json a="""#,
            "busy >= 20ms",
            r#"__error__="""#,
            r#"a!="""#
        ]
    );
    assert_eq!(
        stages.iter().map(|s| can_fail(s)).collect::<Vec<_>>(),
        [true, true, false, false]
    );
    assert!(is_guard(&stages[2]));
}

/// Grafana's per-second count units (`cps`, `ops`, `reqps`, `rps`, `wps`, `iops`, `eps`,
/// `mps`: "Throughput" in its unit list).
const PER_SECOND: &[&str] = &["cps", "ops", "reqps", "rps", "wps", "iops", "eps", "mps"];

/// The unit a metric query's result has, from its outer range function.
fn unit_of(expr: &str) -> &'static str {
    let bare = strip_strings(expr);
    if bare.contains("bytes_rate(") || bare.contains("bytes_over_time(") {
        panic!("teach unit_of about byte queries: {expr}");
    }
    if bare.contains("rate(") {
        return "per second";
    }
    if bare.contains("count_over_time(") {
        return "count";
    }
    let unwrap = Regex::new(r"unwrap\s+(?:[a-z_]+\()?([A-Za-z_]\w*)").expect("regex");
    let label = unwrap
        .captures(&bare)
        .unwrap_or_else(|| panic!("neither a rate, a count nor an unwrap: {expr}"))[1]
        .to_string();
    match label.rsplit('_').next() {
        Some("ms") => "ms",
        Some("s" | "seconds") => "s",
        Some("bytes") => "bytes",
        _ => panic!("no unit in the unwrapped label's name {label:?}: {expr}"),
    }
}

/// The metric panels: (panel, its metric query expressions).
fn metric_panels() -> Vec<(Json, Vec<String>)> {
    panels()
        .into_iter()
        .filter(|p| p["type"] == "timeseries")
        .map(|p| {
            let exprs = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str().map(str::to_string))
                .collect();
            (p, exprs)
        })
        .collect()
}

#[test]
fn every_metric_panels_unit_is_what_its_queries_yield() {
    let panels = metric_panels();
    assert!(panels.len() >= 4);
    for (panel, exprs) in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_else(|| panic!("{title}: no unit"));
        assert!(!exprs.is_empty(), "{title}: no query");
        for expr in &exprs {
            let ok = match unit_of(expr) {
                "per second" => PER_SECOND.contains(&unit),
                "count" => matches!(unit, "short" | "none"),
                yielded => unit == yielded,
            };
            assert!(ok, "{title}: unit {unit:?} for {expr}");
        }
        // An override could give one series another unit behind the default's back.
        let overrides = panel["fieldConfig"]["overrides"].to_string();
        assert!(!overrides.contains("\"unit\""), "{title}: a unit override");
    }
}

/// `1m` as a title writes it: `1 min`; `30s`: `30 s`; `2h`: `2 h`.
fn in_words(window: &str) -> String {
    let secs = humantime::parse_duration(window)
        .unwrap_or_else(|e| panic!("window {window:?}: {e}"))
        .as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[test]
fn every_metric_panel_means_the_same_at_every_zoom() {
    for (panel, exprs) in metric_panels() {
        let title = panel["title"].as_str().unwrap_or_default();
        for expr in &exprs {
            for (_, window) in pipelines(expr) {
                if window.starts_with('$') {
                    // `[$__auto]` is the query step: only an average per second over it
                    // reads the same at every zoom (a count grows with the step).
                    assert_eq!(unit_of(expr), "per second", "{title}: {expr}");
                    continue;
                }
                // A fixed window: the title says which, and the latency panels keep the
                // step from shrinking to a few seconds (points closer than the window only
                // repeat it; Grafana's min interval bounds the step from below).
                assert!(
                    title.contains(&in_words(&window)),
                    "{title:?} does not name its {window} window"
                );
                let interval = panel["interval"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: no min interval"));
                let interval = humantime::parse_duration(interval).expect("min interval");
                let window = humantime::parse_duration(&window).expect("window");
                assert!(
                    interval >= std::time::Duration::from_secs(10) && interval <= window,
                    "{title}: min interval {interval:?} outside 10 s ..= {window:?}"
                );
            }
        }
    }
}

#[test]
fn percentile_panels_show_no_legend_calculation_that_misreads_a_percentile() {
    // The mean (or sum) of p99s is not a percentile of anything; the last and the worst
    // window's p99 are what the panel plots.
    let allowed = ["last", "lastNotNull", "max", "min", "first", "firstNotNull"];
    let mut percentile_panels = 0;
    for (panel, exprs) in metric_panels() {
        if !exprs.iter().any(|e| e.contains("quantile_over_time(")) {
            continue;
        }
        percentile_panels += 1;
        let title = panel["title"].as_str().unwrap_or_default();
        for calc in panel["options"]["legend"]["calcs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let calc = calc.as_str().unwrap_or_default();
            assert!(allowed.contains(&calc), "{title}: legend calc {calc:?}");
        }
    }
    assert!(percentile_panels >= 2, "the two p99 panels");
}
