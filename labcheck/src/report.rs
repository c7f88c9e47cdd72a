//! Checks on loadgen's JSON reports, read through loadgen's own [`Report`] type (its schema:
//! `loadgen/report.schema.json`). A report file holds one JSON object per round; the last
//! round is the one checked.

use std::collections::HashMap;

use loadgen::{
    report::{Report, Stats},
    scenario::Route,
    suspects::Kind,
};

use crate::Verdict;

/// The last round of a report file's text.
pub fn last_round(text: &str) -> Result<Report, String> {
    let line = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .ok_or("holds no report")?;
    serde_json::from_str(line).map_err(|e| format!("not a loadgen report: {e}"))
}

fn route_stats(routes: &[loadgen::report::RouteRow], route: Route) -> Option<&Stats> {
    routes.iter().find(|r| r.route == route).map(|r| &r.stats)
}

/// The corrected p99 in ms; `None` when unknown or zero.
fn p99(stats: Option<&Stats>) -> Option<f64> {
    let p99 = stats?.latency.corrected?.p99_ms;
    (p99 > 0.0).then_some(p99)
}

/// Every api replica (by container hostname) answered with 2xx and reports flavor `release`,
/// and the canary answered with 2xx.
pub fn fleet(report: &Report, hostnames: &[String]) -> Verdict {
    let mut seen = Vec::new();
    let mut served: HashMap<&str, (Option<&str>, u64)> = HashMap::new();
    for inst in &report.instances {
        let ok = inst.stats.status_classes.c2xx;
        let flavor = inst.flavor.as_deref();
        seen.push(format!(
            "  {:<14} {:<8} {:<21} requests={:<5} 2xx={ok}",
            inst.instance,
            flavor.unwrap_or("None"),
            inst.address,
            inst.stats.requests
        ));
        served.insert(&inst.instance, (flavor, ok));
    }
    let missing: Vec<&str> = hostnames
        .iter()
        .filter(|h| served.get(h.as_str()).is_none_or(|(_, ok)| *ok == 0))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let why = format!(
            "api replicas without successful requests: {}",
            missing.join(", ")
        );
        return Verdict::fail(seen, why);
    }
    let wrong: Vec<&str> = hostnames
        .iter()
        .filter(|h| served[h.as_str()].0 != Some("release"))
        .map(String::as_str)
        .collect();
    if !wrong.is_empty() {
        let why = format!(
            "api replicas not reporting flavor release: {}",
            wrong.join(", ")
        );
        return Verdict::fail(seen, why);
    }
    if !served
        .values()
        .any(|(flavor, ok)| *flavor == Some("canary") && *ok > 0)
    {
        return Verdict::fail(seen, "the canary served no successful request");
    }
    let summary = format!(
        "ok: all {} api replicas and the canary served requests",
        hostnames.len()
    );
    Verdict::pass(seen, summary)
}

/// On some instance that served `/config/sync`, the victim's (`orders`) corrected p99 is at
/// least `ratio` times its p99 in the baseline run.
pub fn tail(baseline: &Report, loaded: &Report, ratio: f64) -> Verdict {
    let base: HashMap<&str, Option<f64>> = baseline
        .instances
        .iter()
        .map(|i| {
            (
                i.instance.as_str(),
                p99(route_stats(&i.routes, Route::Orders)),
            )
        })
        .collect();
    let mut seen = Vec::new();
    let mut best: Option<f64> = None;
    for inst in &loaded.instances {
        let Some(sync) = route_stats(&inst.routes, Route::ConfigSync) else {
            continue;
        };
        if sync.requests == 0 {
            continue;
        }
        let before = base.get(inst.instance.as_str()).copied().flatten();
        let after = p99(route_stats(&inst.routes, Route::Orders));
        let (Some(before), Some(after)) = (before, after) else {
            continue;
        };
        let r = after / before;
        seen.push(format!(
            "  {:<14} config_sync={:<3} orders p99 {before:8.1} ms -> {after:8.1} ms  ({r:.1}x)",
            inst.instance, sync.requests
        ));
        best = Some(best.map_or(r, |b| b.max(r)));
    }
    match best {
        None => Verdict::fail(
            seen,
            "no instance served /config/sync and the victim in both runs",
        ),
        Some(best) if best < ratio => Verdict::fail(
            seen,
            format!("the victim's p99 grew at most {best:.1}x, expected >= {ratio}x"),
        ),
        Some(best) => Verdict::pass(
            seen,
            format!("ok: the victim's p99 grew {best:.1}x (>= {ratio}x) beside /config/sync"),
        ),
    }
}

/// A suspect's kind as the report writes it.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Blocked => "blocked",
        Kind::Stall => "stall",
    }
}

/// loadgen names `config_sync` as the top suspect, a blocking one with request_ids that
/// explains slow requests, and every instance's block record could be read.
pub fn suspects(report: &Report) -> Verdict {
    let summary = &report.suspects_summary;
    let Some(top) = report.suspects.first() else {
        return Verdict::fail(
            Vec::new(),
            format!(
                "no suspects ({} slow requests, {} explained)",
                summary.slow_requests, summary.explained
            ),
        );
    };
    if (top.handler.as_str(), top.kind) != ("config_sync", Kind::Blocked) {
        return Verdict::fail(
            Vec::new(),
            format!("top suspect {}/{}", top.handler, kind_name(top.kind)),
        );
    }
    if top.request_ids.is_empty() || top.explains == 0 {
        return Verdict::fail(
            Vec::new(),
            format!(
                "top suspect config_sync on {} explains {} slow requests with {} request_ids",
                top.instance,
                top.explains,
                top.request_ids.len()
            ),
        );
    }
    if !summary.unavailable.is_empty() {
        let list: Vec<String> = summary
            .unavailable
            .iter()
            .map(|u| format!("{} ({})", u.instance, u.error))
            .collect();
        return Verdict::fail(
            Vec::new(),
            format!("instances without /debug/blocked: {}", list.join(", ")),
        );
    }
    Verdict::pass(
        Vec::new(),
        format!(
            "ok: config_sync explains {} of {} slow requests (all suspects: {} explained), e.g. {} on {}",
            top.explains, top.slow_requests, summary.explained, top.request_ids[0], top.instance
        ),
    )
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Reports built from loadgen's types, with only what the checks read filled in.

    use loadgen::{
        record::Bucket,
        report::{
            stats_of, GateReport, InstanceRow, Mode, Report, RouteRow, SlowRow, Stats, SuspectRow,
            SuspectsSummary,
        },
        scenario::Route,
        stats::LatencySummary,
        suspects::Kind,
    };

    pub fn stats(requests: u64, ok: u64, p99_ms: Option<f64>) -> Stats {
        let mut s = stats_of(&Bucket::default(), None);
        s.requests = requests;
        s.status_classes.c2xx = ok;
        s.latency.corrected = p99_ms.map(|p99_ms| LatencySummary {
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms,
            p99_9_ms: p99_ms,
            max_ms: p99_ms,
            mean_ms: 1.0,
        });
        s
    }

    /// An instance with routes `(route, requests, p99_ms)`, all answered with 2xx.
    pub fn instance(name: &str, flavor: Option<&str>, routes: &[(Route, u64, f64)]) -> InstanceRow {
        let total: u64 = routes.iter().map(|r| r.1).sum();
        InstanceRow {
            instance: name.to_owned(),
            flavor: flavor.map(str::to_owned),
            target: format!("http://{name}:8080"),
            address: "10.0.0.2:8080".to_owned(),
            stats: stats(total, total, Some(1.0)),
            routes: routes
                .iter()
                .map(|&(route, n, p99)| RouteRow {
                    route,
                    stats: stats(n, n, Some(p99)),
                })
                .collect(),
        }
    }

    pub fn slow(request_id: &str, instance: &str, status: Option<u16>) -> SlowRow {
        SlowRow {
            request_id: request_id.to_owned(),
            route: Route::Orders,
            instance: instance.to_owned(),
            address: "10.0.0.2:8080".to_owned(),
            latency_ms: 300.0,
            actual_ms: Some(290.0),
            start: "2026-01-01T00:00:00.000Z".to_owned(),
            status,
            error: None,
            logql: String::new(),
            explore_url: String::new(),
        }
    }

    pub fn suspect(handler: &str, kind: Kind, explains: u64, request_ids: &[&str]) -> SuspectRow {
        SuspectRow {
            handler: handler.to_owned(),
            kind,
            explains,
            slow_requests: 10,
            victims_by_route: Default::default(),
            instance: "api-1".to_owned(),
            request_ids: request_ids.iter().map(|s| s.to_string()).collect(),
            blocked_ms: 300.0,
            stack: None,
            logql: String::new(),
            explore_url: String::new(),
        }
    }

    pub fn report(instances: Vec<InstanceRow>) -> Report {
        Report {
            schema_version: loadgen::report::SCHEMA_VERSION,
            round: 1,
            started_at: "2026-01-01T00:00:00.000Z".to_owned(),
            mode: Mode::Open,
            concurrency: 64,
            requested_rate: Some(200.0),
            duration_s: 20.0,
            elapsed_s: 20.1,
            mix: "orders=99,config_sync=1".to_owned(),
            total: stats(0, 0, None),
            routes: Vec::new(),
            instances,
            slowest: Vec::new(),
            suspects: Vec::new(),
            suspects_summary: SuspectsSummary {
                slow_requests: 10,
                explained: 9,
                explained_share: Some(0.9),
                clock_skew_ms: 5.0,
                unavailable: Vec::new(),
            },
            gates: GateReport::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use loadgen::report::Unavailable;

    use super::{fixtures::*, *};

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn fleet_report() -> Report {
        report(vec![
            instance("a1", Some("release"), &[(Route::Orders, 10, 5.0)]),
            instance("a2", Some("release"), &[(Route::Orders, 10, 5.0)]),
            instance("canary", Some("canary"), &[(Route::Orders, 10, 5.0)]),
        ])
    }

    #[test]
    fn a_report_file_is_read_by_its_last_round_through_loadgens_types() {
        let mut first = fleet_report();
        first.round = 1;
        let mut second = fleet_report();
        second.round = 2;
        let text = format!(
            "{}\n{}\n\n",
            serde_json::to_string(&first).unwrap(),
            serde_json::to_string(&second).unwrap()
        );
        assert_eq!(last_round(&text).unwrap().round, 2);
        assert_eq!(last_round("\n \n").unwrap_err(), "holds no report");
        assert!(last_round("{\"round\": 1}")
            .unwrap_err()
            .starts_with("not a loadgen report"));
    }

    #[test]
    fn fleet_passes_when_every_replica_and_the_canary_served() {
        let v = fleet(&fleet_report(), &hosts(&["a1", "a2"]));
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.seen.len(), 3);
    }

    #[test]
    fn fleet_fails_for_a_replica_absent_or_without_2xx() {
        let v = fleet(&fleet_report(), &hosts(&["a1", "a2", "a3"]));
        assert_eq!(
            v.failure(),
            Some("api replicas without successful requests: a3")
        );
        let mut r = fleet_report();
        r.instances[1].stats.status_classes.c2xx = 0;
        let v = fleet(&r, &hosts(&["a1", "a2"]));
        assert_eq!(
            v.failure(),
            Some("api replicas without successful requests: a2")
        );
    }

    #[test]
    fn fleet_fails_for_a_replica_of_another_flavor() {
        let mut r = fleet_report();
        r.instances[0].flavor = None;
        let v = fleet(&r, &hosts(&["a1", "a2"]));
        assert_eq!(
            v.failure(),
            Some("api replicas not reporting flavor release: a1")
        );
    }

    #[test]
    fn fleet_fails_when_the_canary_served_nothing() {
        let mut r = fleet_report();
        r.instances[2].stats.status_classes.c2xx = 0;
        let v = fleet(&r, &hosts(&["a1", "a2"]));
        assert_eq!(v.failure(), Some("the canary served no successful request"));
        r.instances.pop();
        assert!(!fleet(&r, &hosts(&["a1", "a2"])).passed());
    }

    fn baseline() -> Report {
        report(vec![
            instance("a1", Some("release"), &[(Route::Orders, 100, 2.0)]),
            instance("a2", Some("release"), &[(Route::Orders, 100, 2.0)]),
        ])
    }

    #[test]
    fn tail_takes_the_largest_growth_among_instances_that_served_config_sync() {
        let loaded = report(vec![
            // Served /config/sync: grew 6x.
            instance(
                "a1",
                Some("release"),
                &[(Route::Orders, 100, 12.0), (Route::ConfigSync, 1, 300.0)],
            ),
            // Grew more, but served no /config/sync: not considered.
            instance("a2", Some("release"), &[(Route::Orders, 100, 40.0)]),
        ]);
        let v = tail(&baseline(), &loaded, 5.0);
        assert!(v.passed(), "{v:?}");
        assert_eq!(v.seen.len(), 1);
        let v = tail(&baseline(), &loaded, 7.0);
        assert_eq!(
            v.failure(),
            Some("the victim's p99 grew at most 6.0x, expected >= 7x")
        );
    }

    #[test]
    fn tail_fails_when_no_instance_has_both_runs() {
        let no_sync = report(vec![instance(
            "a1",
            Some("release"),
            &[(Route::Orders, 100, 12.0), (Route::ConfigSync, 0, 0.0)],
        )]);
        let unknown_in_baseline = report(vec![instance(
            "a9",
            Some("release"),
            &[(Route::Orders, 100, 12.0), (Route::ConfigSync, 1, 300.0)],
        )]);
        for loaded in [no_sync, unknown_in_baseline] {
            assert_eq!(
                tail(&baseline(), &loaded, 5.0).failure(),
                Some("no instance served /config/sync and the victim in both runs")
            );
        }
    }

    fn with_suspects() -> Report {
        let mut r = fleet_report();
        r.suspects = vec![
            suspect("config_sync", Kind::Blocked, 9, &["id-1"]),
            suspect("heartbeat", Kind::Stall, 1, &[]),
        ];
        r
    }

    #[test]
    fn suspects_pass_when_config_sync_blocks_at_the_top() {
        let v = suspects(&with_suspects());
        assert!(v.passed(), "{v:?}");
    }

    #[test]
    fn suspects_fail_without_suspects_or_with_another_on_top() {
        let mut r = with_suspects();
        r.suspects.swap(0, 1);
        assert_eq!(suspects(&r).failure(), Some("top suspect heartbeat/stall"));
        r.suspects[0] = suspect("config_sync", Kind::Stall, 9, &["id-1"]);
        assert!(!suspects(&r).passed());
        r.suspects.clear();
        assert!(suspects(&r).failure().unwrap().starts_with("no suspects"));
    }

    #[test]
    fn suspects_fail_when_the_top_one_explains_nothing_or_names_no_request() {
        let mut r = with_suspects();
        r.suspects[0].explains = 0;
        assert!(!suspects(&r).passed());
        let mut r = with_suspects();
        r.suspects[0].request_ids.clear();
        assert!(!suspects(&r).passed());
    }

    #[test]
    fn suspects_fail_when_an_instance_block_record_was_unavailable() {
        let mut r = with_suspects();
        r.suspects_summary.unavailable.push(Unavailable {
            instance: "a2".to_owned(),
            error: "connection refused".to_owned(),
        });
        assert_eq!(
            suspects(&r).failure(),
            Some("instances without /debug/blocked: a2 (connection refused)")
        );
    }
}
