//! Typed settings of the service, from flags and environment variables.
//!
//! Every knob the lab turns (compose `.env`, CI, the docs' tables) is an environment
//! variable, named as in docs/configuration.md; each is also a flag, so `service --help`
//! documents the whole surface. Values are parsed into their real types here (durations,
//! enums, socket addresses), so nothing downstream matches strings at run time.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Parser, Subcommand, ValueEnum};

/// The lab's actix-web service: a fast victim route beside a zoo of worker-blocking bugs.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
pub struct Settings {
    /// HTTP listen address (host:port). Port 0 picks a free port.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Number of actix worker threads, each with its own single-threaded tokio runtime.
    /// Default: the number of CPUs.
    #[arg(long, env = "WORKERS", value_parser = clap::value_parser!(u16).range(1..=512))]
    pub workers: Option<u16>,

    /// Log output format: `json` for shipping, `pretty` for people.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter (EnvFilter syntax, e.g. `info,service=debug`). Applies to the log output only,
    /// never to the console layer of the canary.
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,

    /// Also write rolling JSON log files (daily rotation, 7 files kept) into this directory.
    /// Unset: stdout only.
    #[arg(long, env = "LOG_DIR")]
    pub log_dir: Option<PathBuf>,

    /// Directory that `/config/{sync,async}/{name}` read files from; it must exist. Default:
    /// the first of `sample-config` next to the executable, `service/sample-config` and
    /// `sample-config` in the current directory (found at start-up, not at build time).
    #[arg(long, env = "CONFIG_DIR", value_parser = parse_existing_dir)]
    pub config_dir: Option<PathBuf>,

    /// Emulated disk latency of the config read, in milliseconds (the bug holds the worker
    /// thread this long; the fix waits off the worker).
    #[arg(long = "slow-disk-ms", env = "SLOW_DISK_MS", default_value = "300", value_parser = parse_millis)]
    pub slow_disk: Duration,

    /// Simulated dependency latency of the victim route `/api/orders/{id}`, in milliseconds
    /// (a tokio timer; 0 allowed).
    #[arg(long = "dependency-ms", env = "DEPENDENCY_MS", default_value = "5", value_parser = parse_millis)]
    pub dependency: Duration,

    /// Instance name reported in `/healthz`. Default: the host name.
    #[arg(long, env = "INSTANCE")]
    pub instance: Option<String>,

    /// Blocking-watchdog threshold in milliseconds: a poll of a request's span that runs longer
    /// is logged as `worker blocked` while it blocks, and a worker heartbeat that wakes this much
    /// late as `worker stall`. 0 turns the watchdog off.
    #[arg(long = "long-poll-ms", env = "LONG_POLL_MS", default_value = "40", value_parser = parse_millis)]
    pub long_poll: Duration,

    /// Whether the watchdog's `worker blocked` and `worker stall` lines carry the stack of the
    /// blocked code, captured while it blocks (a signal to the blocked worker thread alone).
    #[arg(long, env = "BLOCKED_STACKS", default_value_t = true, action = clap::ArgAction::Set)]
    pub blocked_stacks: bool,

    /// Whether recent blocks and stalls are kept (bounded) and served at `GET /debug/blocked`,
    /// for loadgen's suspects. Turn it off, or keep the port private, where request ids and
    /// code paths must not be readable by clients.
    #[arg(long, env = "DEBUG_BLOCKED", default_value_t = true, action = clap::ArgAction::Set)]
    pub debug_blocked: bool,

    /// Request tracing: the root span, request ids, the access line and the response header.
    /// `false` only as the benchmarks' baseline (`python3 -m bench wiring`): the cost of the
    /// wiring is measured against the same binary without it.
    #[arg(long, env = "REQUEST_TRACING", default_value_t = true, action = clap::ArgAction::Set)]
    pub request_tracing: bool,

    /// How long a graceful shutdown waits for in-flight requests, in seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_S", default_value = "10")]
    pub shutdown_timeout_s: u64,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off commands instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask the service at LISTEN_ADDR for `/healthz` and exit 0 if it answers 200: a container
    /// healthcheck that needs no curl in the image.
    Healthcheck,
}

/// Output format of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for Loki.
    Json,
    /// Multi-line human-readable output.
    Pretty,
}

/// Which build this is. Follows from the cargo features, never from configuration, so a release
/// binary cannot claim to be a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Default features: no console.
    Release,
    /// Built with `--features console`.
    Canary,
}

impl Flavor {
    /// The flavor of this binary.
    pub const fn current() -> Self {
        if cfg!(feature = "console") {
            Flavor::Canary
        } else {
            Flavor::Release
        }
    }

    /// Lower-case name as it appears in logs and `/healthz`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Flavor::Release => "release",
            Flavor::Canary => "canary",
        }
    }
}

impl Settings {
    /// Worker threads to start: the setting, or one per available CPU.
    pub fn worker_count(&self) -> usize {
        self.workers.map(usize::from).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Instance name: the setting, else the host name, else `unknown`.
    pub fn instance_name(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "unknown".to_owned())
        })
    }
}

/// Where `/config/…` reads from, and how that folder was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigDir {
    /// `CONFIG_DIR` (checked to exist when the settings were parsed).
    Set(PathBuf),
    /// No `CONFIG_DIR`: the first default candidate that exists.
    Found(PathBuf),
    /// No `CONFIG_DIR` and no candidate exists: every config read answers 404.
    Missing { tried: Vec<PathBuf> },
}

impl ConfigDir {
    /// The folder, unless it is [`ConfigDir::Missing`].
    pub fn found(&self) -> Option<&Path> {
        match self {
            ConfigDir::Set(path) | ConfigDir::Found(path) => Some(path),
            ConfigDir::Missing { .. } => None,
        }
    }

    /// The folder reads join names onto; for [`ConfigDir::Missing`], the first candidate.
    pub fn path(&self) -> &Path {
        match self {
            ConfigDir::Set(path) | ConfigDir::Found(path) => path,
            ConfigDir::Missing { tried } => tried.first().map_or(Path::new(SAMPLE), |p| p),
        }
    }
}

/// The sample folder's name, beside the executable or in the current directory. The container
/// images copy it into the image and set `CONFIG_DIR`.
const SAMPLE: &str = "sample-config";

impl Settings {
    /// `CONFIG_DIR`, else the first default candidate that is a directory. Resolved at run time,
    /// so a binary that is copied, installed or run after its checkout moved finds its folder
    /// the same way: `sample-config` next to the executable, then `service/sample-config` (the
    /// workspace root) and `sample-config` (the package folder) in the current directory.
    pub fn resolve_config_dir(&self) -> ConfigDir {
        if let Some(dir) = &self.config_dir {
            return ConfigDir::Set(dir.clone());
        }
        let beside_exe = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join(SAMPLE)));
        let tried: Vec<PathBuf> = beside_exe
            .into_iter()
            .chain([Path::new("service").join(SAMPLE), PathBuf::from(SAMPLE)])
            .map(|dir| std::path::absolute(&dir).unwrap_or(dir))
            .collect();
        match tried.iter().find(|dir| dir.is_dir()) {
            Some(dir) => ConfigDir::Found(dir.clone()),
            None => ConfigDir::Missing { tried },
        }
    }
}

/// A directory that exists (a typo in `CONFIG_DIR` must not turn into 404s at request time).
fn parse_existing_dir(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err("not a directory".to_owned()),
        Err(err) => Err(format!("cannot open the directory: {err}")),
    }
}

/// Milliseconds as a `Duration`, capped at ten minutes so a typo cannot park a worker for a day.
fn parse_millis(raw: &str) -> Result<Duration, String> {
    let ms: u64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a whole number of milliseconds"))?;
    if ms > 600_000 {
        return Err(format!("{ms} ms is more than the 600000 ms maximum"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_parse_and_reject() {
        assert_eq!(parse_millis("300"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_millis("0"), Ok(Duration::ZERO));
        assert!(parse_millis("-1").is_err());
        assert!(parse_millis("3s").is_err());
        assert!(parse_millis("600001").is_err());
    }

    #[test]
    fn config_dir_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(parse_existing_dir(dir.path().to_str().unwrap()).is_ok());
        assert!(parse_existing_dir(file.to_str().unwrap()).is_err());
        assert!(parse_existing_dir(dir.path().join("nothing").to_str().unwrap()).is_err());
    }

    #[test]
    fn flavor_follows_features() {
        let expected = if cfg!(feature = "console") {
            "canary"
        } else {
            "release"
        };
        assert_eq!(Flavor::current().as_str(), expected);
    }
}
