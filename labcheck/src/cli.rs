//! The `labcheck` command line: one subcommand per container check. Each reads its inputs,
//! runs the check, prints what it saw and its one-line verdict.
//!
//! Exit codes: 0 the check passed, 1 it failed or its input could not be read (one `FAIL:`
//! line on stderr), 2 bad usage.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use loadgen::report::Report;

use crate::{compose, console, logs, report, Verdict};

/// The container checks' assertions on what the running lab produced (deploy/ci/containers.sh).
#[derive(Debug, Parser)]
#[command(name = "labcheck", version)]
pub struct Cli {
    #[command(subcommand)]
    pub check: Check,
}

#[derive(Debug, Subcommand)]
pub enum Check {
    /// Without `.env` every tunable has its default and every published port binds 127.0.0.1.
    ComposeDefaults {
        /// `docker compose config --format json` output (`-`: standard input).
        config: PathBuf,
    },
    /// Every api replica (by container hostname) and the canary served requests.
    Fleet {
        /// loadgen's JSON report.
        report: PathBuf,
        /// The api replicas' container hostnames.
        #[arg(required = true)]
        hostnames: Vec<String>,
    },
    /// The victim's p99 on an instance that served /config/sync is at least RATIO times its
    /// baseline p99.
    Tail {
        /// loadgen's report of the victim alone.
        baseline: PathBuf,
        /// loadgen's report of the victim beside /config/sync.
        loaded: PathBuf,
        /// The least growth of the victim's p99.
        #[arg(value_parser = parse_ratio)]
        ratio: f64,
    },
    /// The slowest requests the fleet answered have their request_ids in its JSON logs.
    Slowest {
        /// loadgen's JSON report.
        report: PathBuf,
        /// The fleet's logs (`docker compose logs --no-log-prefix api`).
        logs: PathBuf,
    },
    /// Every /config/sync request has one `worker blocked` line, with its culprit stack,
    /// within MAX_DELAY of the block's start.
    Watchdog {
        /// The fleet's logs (`docker compose logs --no-log-prefix api`).
        logs: PathBuf,
        /// Latest acceptable warning after `loading config`, e.g. `250ms`.
        #[arg(value_parser = humantime::parse_duration)]
        max_delay: Duration,
    },
    /// loadgen names config_sync as the top suspect, a blocking one.
    Suspects {
        /// loadgen's JSON report.
        report: PathBuf,
    },
    /// A real tokio-console gRPC call: the console answers with tokio task spans.
    Console {
        /// The console's `host:port`.
        #[arg(value_parser = parse_host_port)]
        addr: String,
        /// How long to wait for task spans, e.g. `15s`.
        #[arg(default_value = "10s", value_parser = humantime::parse_duration)]
        within: Duration,
        /// Also require every registry location to be one tokio-console shows short, with
        /// actix-server's tasks among them.
        #[arg(long)]
        short_locations: bool,
    },
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected a positive number, got `{s}`")),
    }
}

fn parse_host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!("expected HOST:PORT, got `{s}`")),
    }
}

/// A file's text (invalid UTF-8 replaced), or standard input for `-`.
fn read(path: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut bytes).map(drop)
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_report(path: &Path) -> Result<Report, String> {
    report::last_round(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs the check; `Err` is input that could not be read.
pub fn run(check: &Check) -> Result<Verdict, String> {
    Ok(match check {
        Check::ComposeDefaults { config } => {
            let text = read(config)?;
            let value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", config.display()))?;
            compose::defaults(&value)
        }
        Check::Fleet { report, hostnames } => report::fleet(&read_report(report)?, hostnames),
        Check::Tail {
            baseline,
            loaded,
            ratio,
        } => report::tail(&read_report(baseline)?, &read_report(loaded)?, *ratio),
        Check::Slowest { report, logs } => logs::slowest(&read_report(report)?, &read(logs)?),
        Check::Watchdog { logs, max_delay } => logs::watchdog(&read(logs)?, *max_delay),
        Check::Suspects { report } => report::suspects(&read_report(report)?),
        Check::Console {
            addr,
            within,
            short_locations,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("building the tokio runtime: {e}"))?
            .block_on(console::probe(addr, *within, *short_locations)),
    })
}

/// Prints what the check saw and its verdict; the exit code.
pub fn report_verdict(outcome: Result<Verdict, String>) -> ExitCode {
    match outcome {
        Ok(verdict) => {
            for line in &verdict.seen {
                println!("{line}");
            }
            match verdict.result {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("FAIL: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(why) => {
            eprintln!("FAIL: {why}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in [
            &["labcheck", "console", "localhost"][..],
            &["labcheck", "console", "127.0.0.1:6669", "soon"],
            &["labcheck", "tail", "a", "b", "-1"],
            &["labcheck", "fleet", "report.json"],
            &["labcheck", "watchdog", "api.log", "250"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let cli = Cli::try_parse_from([
            "labcheck",
            "console",
            "127.0.0.1:6669",
            "15s",
            "--short-locations",
        ])
        .unwrap();
        assert!(matches!(
            cli.check,
            Check::Console { within, short_locations: true, .. } if within == Duration::from_secs(15)
        ));
    }

    #[test]
    fn an_unreadable_report_is_a_failure_naming_the_file() {
        let why = run(&Check::Suspects {
            report: "/nonexistent/loaded.json".into(),
        })
        .unwrap_err();
        assert!(
            why.starts_with("cannot read /nonexistent/loaded.json"),
            "{why}"
        );
    }
}
