//! The command line: typed flags (clap derive, each also an environment variable where a
//! container would set it), their validation, and the glue that prints each round's table
//! and appends its JSON. Every bad input becomes one line on stderr and exit code 2.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::Parser;

use crate::{
    error::Error,
    links::{self, LinkConfig},
    render,
    report::Gates,
    run::{self, Load, RunConfig},
    scenario::{Mix, Scenario},
    target::{ResolveOverride, Target},
};

/// Open-loop HTTP load per route and per instance, with coordinated-omission-corrected tails
/// and the slowest request_ids linked to their logs.
///
/// Exit codes: 0 ok, 1 a gate (--max-p99, --max-error-rate, --max-unexplained) failed, 2 bad input or
/// unreachable target.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
pub struct Cli {
    /// Base URLs of the targets (http only, comma-separated in the env var). A name that
    /// resolves to several addresses is expanded to each; the Host header keeps the name.
    #[arg(
        env = "LOADGEN_TARGETS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub targets: Vec<Target>,

    /// Open loop: requests per second across all targets (constant arrival rate).
    #[arg(long, env = "LOADGEN_RATE", default_value = "200", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: f64,

    /// Closed loop instead: this many connections, each sending back to back as fast as the
    /// target answers (for throughput runs; latencies are then not CO-corrected). Takes
    /// precedence over --rate, so a LOADGEN_RATE in the environment does not get in the way.
    #[arg(long, env = "LOADGEN_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: Option<u64>,

    /// Length of one round, e.g. `30s`, `2m`.
    #[arg(short, long, env = "LOADGEN_DURATION", default_value = "30s", value_parser = parse_positive_duration)]
    pub duration: Duration,

    /// Open loop: most requests in flight at once (one connection each); when reached,
    /// further sends wait and count as late, and their wait counts in the corrected latency.
    #[arg(long, env = "LOADGEN_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_in_flight: u64,

    /// Weighted route mix, `route=weight,…`. Routes: orders, config_sync, config_async,
    /// lock_std, lock_tokio, cpu_inline, cpu_offload, healthz, background_blocking.
    #[arg(long, env = "LOADGEN_MIX", default_value = Mix::DEFAULT)]
    pub mix: Mix,

    /// TOML scenario file with a `[mix]` table and optional `[params]` (config_name, cpu_ms,
    /// order_ids, background_ms); takes precedence over --mix.
    #[arg(long, env = "LOADGEN_SCENARIO")]
    pub scenario: Option<PathBuf>,

    /// Per-request timeout; also bounds how long requests in flight at the end are awaited.
    #[arg(long, env = "LOADGEN_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Open loop: a send this much later than planned counts as a late send.
    #[arg(long, env = "LOADGEN_LATE_AFTER", default_value = "2ms", value_parser = parse_duration)]
    pub late_after: Duration,

    /// How many of the slowest requests to list (with request_id, LogQL and Explore link).
    #[arg(long, env = "LOADGEN_SLOWEST", default_value_t = 10)]
    pub slowest: usize,

    /// Also write each round's report as one JSON line to this file (schema:
    /// loadgen/report.schema.json).
    #[arg(short, long, env = "LOADGEN_OUTPUT")]
    pub output: Option<PathBuf>,

    /// Number of rounds, one report each; 0 runs until stopped.
    #[arg(long, env = "LOADGEN_ROUNDS", default_value_t = 1)]
    pub rounds: u64,

    /// Gate: exit 1 if a round's corrected p99 (all requests) exceeds this, e.g. `250ms`.
    #[arg(long, env = "LOADGEN_MAX_P99", value_parser = parse_positive_duration)]
    pub max_p99: Option<Duration>,

    /// Gate: exit 1 if a round's error fraction (errors / requests, 0..=1) exceeds this.
    #[arg(long, env = "LOADGEN_MAX_ERROR_RATE", value_parser = parse_fraction)]
    pub max_error_rate: Option<f64>,

    /// Gate: exit 1 if more than this fraction (0..=1) of a round's slow requests (the
    /// slowest N and every request over its route's p99) overlaps no block of the instance's
    /// workers (see the suspects section).
    #[arg(long, env = "LOADGEN_MAX_UNEXPLAINED", value_parser = parse_fraction)]
    pub max_unexplained: Option<f64>,

    /// Grafana base URL for the Explore links.
    #[arg(long, env = "GRAFANA_URL", default_value = links::DEFAULT_GRAFANA_URL, value_parser = parse_base_url)]
    pub grafana_url: String,

    /// Loki datasource uid for the Explore links [default: the lab's, from grafana/queries.json].
    #[arg(long, env = "LOKI_DATASOURCE_UID")]
    pub datasource_uid: Option<String>,

    /// Use these addresses for NAME instead of DNS: `NAME=ADDR[,ADDR…]` (repeatable).
    #[arg(long, env = "LOADGEN_RESOLVE", value_delimiter = ';')]
    pub resolve: Vec<ResolveOverride>,

    /// Keep retrying unreachable targets this long before giving up (e.g. `60s` in compose).
    #[arg(long, env = "LOADGEN_WAIT", default_value = "0s", value_parser = parse_duration)]
    pub wait: Duration,

    /// Runtime worker threads [default: the CPUs this process may run on].
    #[arg(long, env = "LOADGEN_THREADS", value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,

    /// Never draw the progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("rate must be above 0 requests/s, got {s}"));
    }
    Ok(v)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("'{s}' is not a duration ({e})"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than 0".to_owned());
    }
    Ok(d)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("must be a fraction between 0 and 1, got {s}"));
    }
    Ok(v)
}

fn parse_base_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("'{s}' is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{s}' is not an http(s) URL"));
    }
    Ok(s.to_owned())
}

impl Cli {
    /// The run configuration, loading the scenario file if one is named.
    pub fn config(&self) -> Result<RunConfig, Error> {
        let load = match self.connections {
            Some(c) => Load::Closed {
                connections: c as usize,
            },
            None => Load::Open {
                rate: self.rate,
                max_in_flight: self.max_in_flight as usize,
            },
        };
        let scenario = match &self.scenario {
            Some(path) => Scenario::load(path)?,
            None => Scenario {
                mix: self.mix.clone(),
                ..Scenario::default()
            },
        };
        let mut cfg = RunConfig::new(self.targets.clone(), load, self.duration);
        cfg.resolve = self.resolve.clone();
        cfg.timeout = self.timeout;
        cfg.late_after = self.late_after;
        cfg.scenario = scenario;
        cfg.slowest = self.slowest;
        cfg.rounds = self.rounds;
        cfg.gates = Gates {
            max_p99: self.max_p99,
            max_error_rate: self.max_error_rate,
            max_unexplained: self.max_unexplained,
        };
        cfg.links = LinkConfig {
            grafana_url: self.grafana_url.clone(),
            datasource_uid: self
                .datasource_uid
                .clone()
                .unwrap_or_else(|| LinkConfig::default().datasource_uid),
        };
        cfg.wait = self.wait;
        cfg.progress = !self.no_progress;
        Ok(cfg)
    }

    /// Worker threads for the runtime: `--threads`, else the CPUs in this process's affinity
    /// mask (so `taskset -c 1 loadgen` runs single-threaded instead of fighting itself).
    pub fn worker_threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |t| t as usize,
        )
    }
}

/// Runs the rounds: a table on stdout per round, a JSON line per round in `--output`.
/// Returns the exit code: 0, or 1 when any round failed a gate.
pub async fn execute(cli: &Cli) -> Result<u8, Error> {
    let cfg = cli.config()?;
    let mut output = match &cli.output {
        Some(path) => Some((
            path.clone(),
            BufWriter::new(File::create(path).map_err(|source| Error::Output {
                path: path.clone(),
                source,
            })?),
        )),
        None => None,
    };
    let run = run::run(&cfg, |report| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", render::table(report));
        let _ = stdout.flush();
        if let Some((path, file)) = output.as_mut() {
            let err = |source| Error::Output {
                path: path.clone(),
                source,
            };
            serde_json::to_writer(&mut *file, report).map_err(|e| err(e.into()))?;
            file.write_all(b"\n").map_err(err)?;
            file.flush().map_err(err)?;
        }
        Ok(())
    });
    tokio::select! {
        summary = run => Ok(u8::from(summary?.rounds_failing_gates > 0)),
        signal = shutdown_signal() => {
            // `docker stop` and ctrl-c end a run of endless rounds; that is not a failure.
            eprintln!("loadgen: stopped by {signal} during a round; its report is not written");
            Ok(0)
        }
    }
}

/// Resolves on SIGTERM (`docker stop`; PID 1 in a container ignores it unless handled) or
/// ctrl-c, naming the signal.
pub async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
        "SIGTERM"
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<&'static str>();
    tokio::select! {
        s = ctrl_c => s,
        s = terminate => s,
    }
}

/// Prints a clap error as one line (help and version as usual) and returns its exit code.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(e.kind(), K::DisplayHelp | K::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    eprintln!("{}", one_line(&e.render().to_string()));
    ExitCode::from(2)
}

/// The first line of a multi-line message, joined with the next one when it ends in a colon.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines
        .next()
        .unwrap_or("error: invalid arguments")
        .to_owned();
    match (first.ends_with(':'), lines.next()) {
        (true, Some(next)) => format!("{first} {next}"),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_fit_on_one_line() {
        assert_eq!(
            one_line(
                "error: the following required arguments were not provided:\n  <X>\n\nUsage: x\n"
            ),
            "error: the following required arguments were not provided: <X>"
        );
        assert_eq!(one_line("error: bad\n\nUsage: x"), "error: bad");
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
