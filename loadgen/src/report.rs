//! Report: the machine-readable result of one round (`--output`, one JSON object per line,
//! one line per round; a single-round file is therefore a plain JSON document). The types
//! deserialize too: the container checks (`labcheck`) read reports back through them.
//!
//! The schema is `loadgen/report.schema.json` (JSON Schema 2020-12), checked against real
//! output by `tests/test_server/cli.rs` (every round's line) and `tests/suspects.rs` (reports
//! with real suspects). In short:
//!
//! | key | meaning |
//! |---|---|
//! | `schema_version` | `1`; bumped on any incompatible change |
//! | `round` | 1-based round number |
//! | `started_at` | RFC 3339 UTC, start of the round's schedule |
//! | `mode` | `"open"` (constant arrival rate) or `"closed"` (`--connections`) |
//! | `concurrency` | in-flight cap (open) or connection count (closed) |
//! | `requested_rate` | requests/s asked for (`null` in closed loop) |
//! | `duration_s`, `elapsed_s` | planned length, and wall time including the drain |
//! | `mix` | the route mix, `route=weight,…` |
//! | `total` | [`Stats`] over everything |
//! | `routes[]` | `{route, stats}` per route over all instances |
//! | `instances[]` | `{instance, flavor, target, address, stats, routes[]}` per endpoint |
//! | `slowest[]` | slowest requests by corrected latency: `request_id`, `route`, `instance`, `address`, `latency_ms`, `actual_ms`, `start`, `status`, `error`, `logql`, `explore_url` |
//! | `suspects[]` | culprits of the slow requests (see `src/suspects.rs`), most explaining first: `handler`, `kind` (`blocked`/`stall`), `explains` (slow requests it overlapped), `slow_requests` (considered), `victims_by_route`, `instance`, `request_ids` (the culprit requests'), `blocked_ms` (its longest block), `stack` (or `null`), `logql`, `explore_url` |
//! | `suspects_summary` | `{slow_requests, explained, explained_share, clock_skew_ms, unavailable[]}`; `unavailable[]` = `{instance, error}` for instances whose `/debug/blocked` could not be read |
//! | `gates` | `{max_p99_ms, max_error_rate, max_unexplained, passed, failures[]}` |
//!
//! [`Stats`]: `requests`, `errors`, `error_rate`, `errors_by_kind`
//! (`connect`/`timeout`/`io`/`http_4xx`/`http_5xx`), `status_classes` (`1xx`…`5xx`),
//! `late_sends`, `id_mismatches`, `requested_rate`, `achieved_rate` (send rate between the
//! first and last send, `null` below two requests), and `latency.corrected` /
//! `latency.actual`, each `{p50_ms, p90_ms, p99_ms, p99_9_ms, max_ms, mean_ms}` or `null`
//! when no response arrived. Latencies cover requests that got a response; requests that
//! failed without one appear only in `errors` (and in `slowest` with `actual_ms: null`).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{
    links::{self, LinkConfig},
    record::{Bucket, LaneRecorder, SlowRequest, Slowest},
    scenario::{Route, Scenario},
    send::ErrorKind,
    stats::{self, LatencySummary},
    suspects::{self, Block, Kind},
    target::Endpoint,
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub round: u64,
    pub started_at: String,
    pub mode: Mode,
    pub concurrency: u64,
    pub requested_rate: Option<f64>,
    pub duration_s: f64,
    pub elapsed_s: f64,
    pub mix: String,
    pub total: Stats,
    pub routes: Vec<RouteRow>,
    pub instances: Vec<InstanceRow>,
    pub slowest: Vec<SlowRow>,
    pub suspects: Vec<SuspectRow>,
    pub suspects_summary: SuspectsSummary,
    pub gates: GateReport,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuspectRow {
    pub handler: String,
    pub kind: Kind,
    pub explains: u64,
    pub slow_requests: u64,
    pub victims_by_route: std::collections::BTreeMap<String, u64>,
    pub instance: String,
    pub request_ids: Vec<String>,
    pub blocked_ms: f64,
    pub stack: Option<String>,
    pub logql: String,
    pub explore_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuspectsSummary {
    pub slow_requests: u64,
    pub explained: u64,
    /// `explained / slow_requests`; `null` when no request was slow.
    pub explained_share: Option<f64>,
    pub clock_skew_ms: f64,
    pub unavailable: Vec<Unavailable>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unavailable {
    pub instance: String,
    pub error: String,
}

/// What each endpoint's block record said: `None` when it was not asked (no request reached
/// it), else the blocks or why they could not be read.
pub type BlockRecords = Vec<Option<Result<Vec<Block>, String>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Open,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub errors_by_kind: ErrorCounts,
    pub status_classes: StatusClasses,
    pub late_sends: u64,
    pub id_mismatches: u64,
    pub requested_rate: Option<f64>,
    pub achieved_rate: Option<f64>,
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorCounts {
    pub connect: u64,
    pub timeout: u64,
    pub io: u64,
    pub http_4xx: u64,
    pub http_5xx: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusClasses {
    #[serde(rename = "1xx")]
    pub c1xx: u64,
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// From the intended send time (coordinated-omission corrected).
    pub corrected: Option<LatencySummary>,
    /// From the actual send time.
    pub actual: Option<LatencySummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteRow {
    pub route: Route,
    pub stats: Stats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRow {
    pub instance: String,
    pub flavor: Option<String>,
    pub target: String,
    pub address: String,
    pub stats: Stats,
    pub routes: Vec<RouteRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlowRow {
    pub request_id: String,
    pub route: Route,
    pub instance: String,
    pub address: String,
    pub latency_ms: f64,
    pub actual_ms: Option<f64>,
    pub start: String,
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    pub logql: String,
    pub explore_url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GateReport {
    pub max_p99_ms: Option<f64>,
    pub max_error_rate: Option<f64>,
    pub max_unexplained: Option<f64>,
    pub passed: bool,
    pub failures: Vec<String>,
}

/// Thresholds that fail a round (exit code 1).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gates {
    /// Highest acceptable corrected p99 over all requests.
    pub max_p99: Option<Duration>,
    /// Highest acceptable errors / requests.
    pub max_error_rate: Option<f64>,
    /// Highest acceptable share of slow requests that no suspect explains.
    pub max_unexplained: Option<f64>,
}

impl Gates {
    /// Pure: judges a round's totals and its suspects.
    pub fn evaluate(&self, total: &Stats, suspects: &SuspectsSummary) -> GateReport {
        let mut failures = Vec::new();
        if let Some(max) = self.max_p99 {
            let limit = max.as_secs_f64() * 1000.0;
            match total.latency.corrected {
                Some(l) if l.p99_ms > limit => failures.push(format!(
                    "p99 {:.3} ms exceeds --max-p99 {limit:.3} ms",
                    l.p99_ms
                )),
                None => failures.push("p99 unknown: no response arrived".to_owned()),
                _ => {}
            }
        }
        if let Some(max) = self.max_error_rate {
            if total.error_rate > max {
                failures.push(format!(
                    "error rate {:.4} exceeds --max-error-rate {max}",
                    total.error_rate
                ));
            }
        }
        if let (Some(max), Some(share)) = (self.max_unexplained, suspects.explained_share) {
            let unexplained = 1.0 - share;
            if unexplained > max + 1e-9 {
                failures.push(format!(
                    "{} of {} slow requests ({:.1} %) unexplained, over --max-unexplained {max}",
                    suspects.slow_requests - suspects.explained,
                    suspects.slow_requests,
                    unexplained * 100.0
                ));
            }
        }
        GateReport {
            max_p99_ms: self.max_p99.map(|d| d.as_secs_f64() * 1000.0),
            max_error_rate: self.max_error_rate,
            max_unexplained: self.max_unexplained,
            passed: failures.is_empty(),
            failures,
        }
    }
}

/// Turns one bucket into its report form; `requested_rate` comes from the plan.
pub fn stats_of(b: &Bucket, requested_rate: Option<f64>) -> Stats {
    let e = |k: ErrorKind| b.errors[crate::record::error_index(k)];
    let errors = b.error_total();
    Stats {
        requests: b.requests,
        errors,
        error_rate: stats::error_rate(errors, b.requests),
        errors_by_kind: ErrorCounts {
            connect: e(ErrorKind::Connect),
            timeout: e(ErrorKind::Timeout),
            io: e(ErrorKind::Io),
            http_4xx: e(ErrorKind::Http4xx),
            http_5xx: e(ErrorKind::Http5xx),
        },
        status_classes: StatusClasses {
            c1xx: b.status_classes[0],
            c2xx: b.status_classes[1],
            c3xx: b.status_classes[2],
            c4xx: b.status_classes[3],
            c5xx: b.status_classes[4],
        },
        late_sends: b.late_sends,
        id_mismatches: b.id_mismatches,
        requested_rate,
        achieved_rate: b.achieved_rate(),
        latency: Latency {
            corrected: stats::summarize(&b.corrected),
            actual: stats::summarize(&b.actual),
        },
    }
}

/// Everything `build` needs besides the recorded data.
pub struct RoundInfo<'a> {
    pub round: u64,
    pub started_at: SystemTime,
    pub mode: Mode,
    pub concurrency: u64,
    pub requested_rate: Option<f64>,
    pub duration: Duration,
    pub elapsed: Duration,
    pub scenario: &'a Scenario,
    pub slowest: usize,
    pub links: &'a LinkConfig,
    pub gates: Gates,
}

/// Merges the lanes' recorders and the instances' block records into a report.
pub fn build(
    info: &RoundInfo<'_>,
    endpoints: &[Endpoint],
    lanes: Vec<LaneRecorder>,
    blocks: &BlockRecords,
) -> Report {
    let lanes_n = endpoints.len().max(1) as f64;
    let lane_rate = info.requested_rate.map(|r| r / lanes_n);
    let route_rate = |base: Option<f64>, r: Route| base.map(|b| b * info.scenario.mix.share(r));

    let mut total = Bucket::default();
    let mut per_route: Vec<Option<Bucket>> = vec![None; Route::ALL.len()];
    let mut slowest = Slowest::new(info.slowest);
    let mut instances = Vec::new();
    let mut candidates: Vec<SlowRequest> = Vec::new();
    for mut lane in lanes {
        for top in std::mem::take(&mut lane.route_slowest) {
            candidates.extend(top.into_sorted());
        }
        let ep = &endpoints[lane.endpoint];
        let mut lane_total = Bucket::default();
        let mut rows = Vec::new();
        for (i, bucket) in lane.routes.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            let route = Route::ALL[i];
            lane_total.merge(bucket);
            per_route[i]
                .get_or_insert_with(Bucket::default)
                .merge(bucket);
            rows.push(RouteRow {
                route,
                stats: stats_of(bucket, route_rate(lane_rate, route)),
            });
        }
        total.merge(&lane_total);
        slowest.merge(lane.slowest);
        instances.push(InstanceRow {
            instance: ep.instance.clone(),
            flavor: ep.flavor.clone(),
            target: ep.target.clone(),
            address: ep.addr.to_string(),
            stats: stats_of(&lane_total, lane_rate),
            routes: rows,
        });
    }
    let routes = per_route
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let route = Route::ALL[i];
            b.as_ref().map(|b| RouteRow {
                route,
                stats: stats_of(b, route_rate(info.requested_rate, route)),
            })
        })
        .collect();
    let slowest = slowest.into_sorted();
    // The slow requests: the slowest N, and every request over its route's p99.
    let mut victims: Vec<SlowRequest> = slowest.clone();
    for c in candidates {
        let over_p99 = per_route[c.route.index()]
            .as_ref()
            .is_some_and(|b| stats::micros(c.corrected) > b.corrected.value_at_quantile(0.99));
        if over_p99 && !victims.iter().any(|v| v.request_id == c.request_id) {
            victims.push(c);
        }
    }
    let (suspect_rows, suspects_summary) = suspects_of(info, endpoints, &victims, blocks);
    let slowest = slowest
        .into_iter()
        .map(|s| {
            let ep = &endpoints[s.endpoint];
            let id = s.request_id.hyphenated().to_string();
            let start = info.started_at + s.start;
            let logql = links::logql_for(&id);
            SlowRow {
                explore_url: links::explore_url(info.links, &logql, start),
                logql,
                request_id: id,
                route: s.route,
                instance: ep.instance.clone(),
                address: ep.addr.to_string(),
                latency_ms: stats::micros(s.corrected) as f64 / 1000.0,
                actual_ms: s.actual.map(|a| stats::micros(a) as f64 / 1000.0),
                start: humantime::format_rfc3339_millis(start).to_string(),
                status: s.status,
                error: s.error,
            }
        })
        .collect();
    let total = stats_of(&total, info.requested_rate);
    Report {
        schema_version: SCHEMA_VERSION,
        round: info.round,
        started_at: humantime::format_rfc3339_millis(info.started_at).to_string(),
        mode: info.mode,
        concurrency: info.concurrency,
        requested_rate: info.requested_rate,
        duration_s: info.duration.as_secs_f64(),
        elapsed_s: info.elapsed.as_secs_f64(),
        mix: info.scenario.mix.to_string(),
        gates: info.gates.evaluate(&total, &suspects_summary),
        total,
        routes,
        instances,
        slowest,
        suspects: suspect_rows,
        suspects_summary,
    }
}

/// Joins the slow requests with the block records (see [`suspects`]).
fn suspects_of(
    info: &RoundInfo<'_>,
    endpoints: &[Endpoint],
    slow: &[SlowRequest],
    blocks: &BlockRecords,
) -> (Vec<SuspectRow>, SuspectsSummary) {
    let victims: Vec<suspects::Victim> = slow
        .iter()
        .map(|s| suspects::Victim {
            request_id: s.request_id.hyphenated().to_string(),
            route: s.route,
            endpoint: s.endpoint,
            sent: info.started_at + s.sent,
            answered: info.started_at + s.done,
        })
        .collect();
    let empty = Vec::new();
    let records: Vec<Vec<Block>> = (0..endpoints.len())
        .map(|i| match blocks.get(i) {
            Some(Some(Ok(b))) => b.clone(),
            _ => empty.clone(),
        })
        .collect();
    let joined = suspects::join(&victims, &records, suspects::CLOCK_SKEW);
    let rows = joined
        .culprits
        .iter()
        .map(|c| {
            let instance = endpoints[c.endpoint].instance.clone();
            let logql = match (c.kind, c.request_ids.first()) {
                (Kind::Blocked, Some(id)) => links::logql_for(id),
                _ => links::watchdog_logql_for(&instance),
            };
            SuspectRow {
                handler: c.handler.clone(),
                kind: c.kind,
                explains: c.explains as u64,
                slow_requests: joined.slow_requests as u64,
                victims_by_route: c
                    .victims_by_route
                    .iter()
                    .map(|(r, n)| (r.name().to_owned(), *n as u64))
                    .collect(),
                instance,
                request_ids: c.request_ids.clone(),
                blocked_ms: (c.blocked_ms * 10.0).round() / 10.0,
                stack: c.stack.clone(),
                explore_url: links::explore_url(info.links, &logql, c.start),
                logql,
            }
        })
        .collect();
    let unavailable = blocks
        .iter()
        .enumerate()
        .filter_map(|(i, b)| match b {
            Some(Err(e)) => Some(Unavailable {
                instance: endpoints[i].instance.clone(),
                error: e.clone(),
            }),
            _ => None,
        })
        .collect();
    let summary = SuspectsSummary {
        slow_requests: joined.slow_requests as u64,
        explained: joined.explained as u64,
        explained_share: (joined.slow_requests > 0)
            .then(|| joined.explained as f64 / joined.slow_requests as f64),
        clock_skew_ms: suspects::CLOCK_SKEW.as_secs_f64() * 1000.0,
        unavailable,
    };
    (rows, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total_with(p99_ms: f64, error_rate: f64) -> Stats {
        let mut s = stats_of(&Bucket::default(), None);
        s.error_rate = error_rate;
        s.latency.corrected = Some(LatencySummary {
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms,
            p99_9_ms: p99_ms,
            max_ms: p99_ms,
            mean_ms: 1.0,
        });
        s
    }

    fn explained(slow: u64, explained: u64) -> SuspectsSummary {
        SuspectsSummary {
            slow_requests: slow,
            explained,
            explained_share: (slow > 0).then(|| explained as f64 / slow as f64),
            clock_skew_ms: 5.0,
            unavailable: Vec::new(),
        }
    }

    #[test]
    fn gates_fail_only_when_exceeded() {
        let gates = Gates {
            max_p99: Some(Duration::from_millis(50)),
            max_error_rate: Some(0.01),
            max_unexplained: Some(0.2),
        };
        assert!(
            gates
                .evaluate(&total_with(50.0, 0.01), &explained(10, 8))
                .passed
        );
        assert!(
            gates
                .evaluate(&total_with(50.0, 0.01), &explained(0, 0))
                .passed
        );
        let r = gates.evaluate(&total_with(50.5, 0.02), &explained(10, 7));
        assert!(!r.passed);
        assert_eq!(r.failures.len(), 3);
        assert!(
            Gates::default()
                .evaluate(&total_with(1e9, 1.0), &explained(10, 0))
                .passed
        );
    }
}
