//! Run: wires the pipeline for each round. One lane per endpoint (resolved address), each with
//! its own [`Schedule`] and a share of the workers; every worker owns one connection and runs
//! the same loop whatever the pacing: claim a ticket → send → record.
//!
//! Open-loop lanes split the rate evenly and are staggered by `1/rate`, so the arrivals of all
//! lanes together are still evenly spaced. Requests still in flight when the plan ends are
//! awaited (each is bounded by `--timeout`), never dropped, so the slowest requests stay in
//! the tail.

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, SystemTime},
};

use hyper::{header::HeaderValue, Uri};
use tokio::{task::JoinSet, time::Instant};
use uuid::Uuid;

use crate::{
    error::Error,
    links::LinkConfig,
    progress::{self, Counters},
    record::{LaneRecorder, Sample},
    report::{self, BlockRecords, Gates, Mode, Report, RoundInfo},
    scenario::{Route, Scenario},
    schedule::{Pacing, Schedule},
    send::{Client, ErrorKind, Outcome},
    suspects,
    target::{self, Endpoint, ResolveOverride, Target},
};

/// The load model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Constant arrival rate across all endpoints, with at most `max_in_flight` requests out.
    Open { rate: f64, max_in_flight: usize },
    /// `connections` connections (split over the endpoints), each sending back to back.
    Closed { connections: usize },
}

/// A validated run configuration (the CLI builds one; tests build their own).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub targets: Vec<Target>,
    pub resolve: Vec<ResolveOverride>,
    pub load: Load,
    pub duration: Duration,
    pub timeout: Duration,
    pub late_after: Duration,
    pub scenario: Scenario,
    pub slowest: usize,
    /// Number of rounds; 0 = until the process is stopped.
    pub rounds: u64,
    pub gates: Gates,
    pub links: LinkConfig,
    /// How long to keep retrying unreachable targets before giving up.
    pub wait: Duration,
    pub progress: bool,
}

impl RunConfig {
    /// Defaults for everything but the targets and the load.
    pub fn new(targets: Vec<Target>, load: Load, duration: Duration) -> Self {
        Self {
            targets,
            resolve: Vec::new(),
            load,
            duration,
            timeout: Duration::from_secs(10),
            late_after: Duration::from_millis(2),
            scenario: Scenario::default(),
            slowest: 10,
            rounds: 1,
            gates: Gates::default(),
            links: LinkConfig::default(),
            wait: Duration::ZERO,
            progress: false,
        }
    }
}

/// How the run went, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub rounds: u64,
    pub rounds_failing_gates: u64,
}

/// Discovers the endpoints, then runs the rounds, handing each report to `on_report`.
pub async fn run(
    cfg: &RunConfig,
    mut on_report: impl FnMut(&Report) -> Result<(), Error>,
) -> Result<RunSummary, Error> {
    let endpoints = target::discover(&cfg.targets, &cfg.resolve, cfg.timeout, cfg.wait).await?;
    let mut summary = RunSummary {
        rounds: 0,
        rounds_failing_gates: 0,
    };
    loop {
        summary.rounds += 1;
        let report = run_round(cfg, &endpoints, summary.rounds).await;
        if !report.gates.passed {
            summary.rounds_failing_gates += 1;
        }
        on_report(&report)?;
        if cfg.rounds != 0 && summary.rounds >= cfg.rounds {
            return Ok(summary);
        }
    }
}

/// Splits `n` as evenly as possible into `parts` shares of at least one.
fn share(n: usize, parts: usize, k: usize) -> usize {
    (n / parts + usize::from(k < n % parts)).max(1)
}

/// One round against already discovered endpoints.
pub async fn run_round(cfg: &RunConfig, endpoints: &[Endpoint], round: u64) -> Report {
    let lanes = endpoints.len().max(1);
    let scenario = Arc::new(cfg.scenario.clone());
    let counters = Arc::new(Counters::default());
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    let bar = cfg
        .progress
        .then(|| progress::start(round, cfg.duration, counters.clone()))
        .flatten();

    let mut recorders = Vec::with_capacity(lanes);
    let mut workers = JoinSet::new();
    for (k, ep) in endpoints.iter().enumerate() {
        let (n_workers, schedule) = match cfg.load {
            Load::Open {
                rate,
                max_in_flight,
            } => (
                share(max_in_flight, lanes, k),
                Schedule::new(
                    t0 + Duration::from_secs_f64(k as f64 / rate),
                    Pacing::open(rate / lanes as f64, cfg.duration),
                ),
            ),
            Load::Closed { connections } => (
                share(connections, lanes, k),
                Schedule::new(
                    t0,
                    Pacing::Unpaced {
                        duration: cfg.duration,
                    },
                ),
            ),
        };
        let schedule = Arc::new(schedule);
        let recorder = Arc::new(Mutex::new(LaneRecorder::new(
            k,
            cfg.slowest,
            cfg.late_after,
        )));
        recorders.push(recorder.clone());
        for _ in 0..n_workers {
            workers.spawn(worker(Worker {
                t0,
                schedule: schedule.clone(),
                client: Client::new(ep.destination.clone(), cfg.timeout),
                recorder: recorder.clone(),
                scenario: scenario.clone(),
                counters: counters.clone(),
                backoff_on_connect_error: matches!(cfg.load, Load::Closed { .. }),
            }));
        }
    }
    while workers.join_next().await.is_some() {}
    let elapsed = t0.elapsed();
    if let Some(bar) = bar {
        bar.abort();
    }

    let lanes: Vec<LaneRecorder> = recorders
        .into_iter()
        .map(|r| match Arc::try_unwrap(r) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(shared) => shared.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
        .collect();
    let (mode, concurrency, requested_rate) = match cfg.load {
        Load::Open {
            rate,
            max_in_flight,
        } => (Mode::Open, max_in_flight as u64, Some(rate)),
        Load::Closed { connections } => (Mode::Closed, connections as u64, None),
    };
    let info = RoundInfo {
        round,
        started_at,
        mode,
        concurrency,
        requested_rate,
        duration: cfg.duration,
        elapsed,
        scenario: &cfg.scenario,
        slowest: cfg.slowest,
        links: &cfg.links,
        gates: cfg.gates,
    };
    let since = started_at
        .checked_sub(suspects::SINCE_MARGIN)
        .unwrap_or(started_at);
    let blocks = fetch_blocks(endpoints, &lanes_reached(&lanes), since, cfg.timeout).await;
    report::build(&info, endpoints, lanes, &blocks)
}

/// Which lanes sent at least one request (their instances are asked for blocks).
fn lanes_reached(lanes: &[LaneRecorder]) -> Vec<bool> {
    let mut reached = Vec::new();
    for lane in lanes {
        if reached.len() <= lane.endpoint {
            reached.resize(lane.endpoint + 1, false);
        }
        reached[lane.endpoint] = lane.routes.iter().flatten().any(|b| b.requests > 0);
    }
    reached
}

/// Asks every reached instance, concurrently, for its blocks since `since`.
async fn fetch_blocks(
    endpoints: &[Endpoint],
    reached: &[bool],
    since: SystemTime,
    timeout: Duration,
) -> BlockRecords {
    let timeout = timeout.min(Duration::from_secs(5));
    let mut set = JoinSet::new();
    for (i, ep) in endpoints.iter().enumerate() {
        if reached.get(i).copied().unwrap_or(false) {
            let ep = ep.clone();
            set.spawn(async move { (i, suspects::fetch(&ep, since, timeout).await) });
        }
    }
    let mut out: BlockRecords = vec![None; endpoints.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, record)) = joined {
            out[i] = Some(record);
        }
    }
    out
}

struct Worker {
    t0: Instant,
    schedule: Arc<Schedule>,
    client: Client,
    recorder: Arc<Mutex<LaneRecorder>>,
    scenario: Arc<Scenario>,
    counters: Arc<Counters>,
    backoff_on_connect_error: bool,
}

/// The one worker loop: claim → send → record, until the schedule runs out.
async fn worker(mut w: Worker) {
    let mut buf = Uuid::encode_buffer();
    // URIs of the routes whose path never changes, parsed once per worker.
    let fixed: Vec<Option<Uri>> = Route::ALL
        .iter()
        .map(|r| {
            (!r.varies_per_request())
                .then(|| w.client.uri(&r.path(0, &w.scenario.params)))
                .flatten()
        })
        .collect();
    while let Some(ticket) = w.schedule.next().await {
        let route = w.scenario.mix.pick(ticket.seq);
        let uri = match &fixed[route.index()] {
            Some(uri) => Some(uri.clone()),
            None => w.client.uri(&route.path(ticket.seq, &w.scenario.params)),
        };
        let request_id = Uuid::now_v7();
        let header = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut buf))
            .expect("a UUID is a valid header value");
        let sent = Instant::now();
        let outcome = match uri {
            Some(uri) => w.client.get(uri, &header).await,
            None => Outcome {
                status: None,
                error: Some(ErrorKind::Io),
                id_echoed: false,
            },
        };
        let done = Instant::now();
        let sample = Sample {
            route,
            request_id,
            intended: ticket.intended.map(|i| i.saturating_duration_since(w.t0)),
            sent: sent - w.t0,
            done: done - w.t0,
            outcome,
        };
        w.recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(&sample);
        w.counters.done.fetch_add(1, Ordering::Relaxed);
        if outcome.error.is_some() {
            w.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        if w.backoff_on_connect_error && outcome.error == Some(ErrorKind::Connect) {
            // A dead target refuses in microseconds; without a pause a closed-loop worker
            // would spin on it and starve the live ones.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_split_evenly_and_never_to_zero() {
        let v: Vec<_> = (0..3).map(|k| share(10, 3, k)).collect();
        assert_eq!(v, [4, 3, 3]);
        assert_eq!(share(1, 3, 2), 1);
    }
}
