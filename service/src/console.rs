//! The canary's tokio-console endpoint (cargo feature `console`): its settings and its layer.
//!
//! console-subscriber reads its settings from the environment in
//! `Builder::with_default_env()` and **panics** on values it cannot parse
//! (`TOKIO_CONSOLE_BIND=localhost`, `TOKIO_CONSOLE_RETENTION=60` without a unit), and its
//! server thread panics when the address is taken. A canary that dies with a backtrace at
//! start-up helps nobody, so [`ConsoleSettings::from_env`] parses the variables itself and
//! turns each problem into a one-line error (the binary exits 2), and [`ConsoleSettings::probe_bind`]
//! checks that the address can be bound before the server thread tries.
//!
//! Its defaults are the lab's, not console-subscriber's, so that a canary left running cannot
//! eat the host's memory: every task costs two histograms (poll and scheduled time) for as
//! long as it is alive and for the retention after it ends, so memory is about tasks per second
//! × retention × bytes per task, plus the live tasks. [`layer`] builds
//! the layer with `Builder::build()` and a per-layer filter of its own (tasks and wakers; tokio's
//! resource and async-op spans only with `TOKIO_CONSOLE_RESOURCES=true`), and serves it on its
//! own thread with its own runtime, as `Builder::spawn()` does. Measurements: `docs/benchmarks.md`.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TOKIO_CONSOLE_BIND` | gRPC listen address (`HOST:PORT`) | `127.0.0.1:6669` |
//! | `TOKIO_CONSOLE_RETENTION` | how long finished tasks are kept (`60s`, `10m`; unit required) | `10s` (console-subscriber: `1h`) |
//! | `TOKIO_CONSOLE_PUBLISH_INTERVAL` | how often updates are sent (`1s`, `500ms`) | `1s` |
//! | `TOKIO_CONSOLE_BUFFER_CAPACITY` | events buffered before the aggregator drops some | `102400` |
//! | `TOKIO_CONSOLE_RECORD_PATH` | also record events to this file | unset |
//! | `TOKIO_CONSOLE_RESOURCES` | also track tokio's resources (timers, locks, channels): the console's resources view | `false` |
//!
//! Poll and scheduled times are recorded in histograms up to [`POLL_HISTOGRAM_MAX`] and
//! [`SCHEDULED_HISTOGRAM_MAX`]; longer ones count as outliers at the maximum (a task's busy
//! time stays exact, and the watchdog logs every long poll).

use std::{
    net::{SocketAddr, TcpListener, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use console_subscriber::ConsoleLayer;
use tracing::{subscriber::Subscriber, Metadata};
use tracing_subscriber::{filter::FilterFn, registry::LookupSpan, Layer};

/// How long finished tasks are kept when `TOKIO_CONSOLE_RETENTION` is unset. A connected
/// tokio-console keeps its own history (6 s by default), so the canary needs little more.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(10);

/// Upper bound of each task's poll-time histogram: above the lab's blocks (`SLOW_DISK_MS`
/// defaults to 300 ms).
pub const POLL_HISTOGRAM_MAX: Duration = Duration::from_secs(2);

/// Upper bound of each task's scheduled-time histogram (woken until polled).
pub const SCHEDULED_HISTOGRAM_MAX: Duration = Duration::from_secs(1);

/// The console settings, validated.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub bind: SocketAddr,
    pub retention: Duration,
    pub publish_interval: Option<Duration>,
    pub buffer_capacity: Option<usize>,
    pub record_path: Option<PathBuf>,
    /// Whether tokio's resource and async-op spans reach the console.
    pub resources: bool,
}

/// A console setting console-subscriber would panic on, or one the lab adds.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("invalid TOKIO_CONSOLE_BIND={value:?}: expected HOST:PORT, e.g. 0.0.0.0:6669")]
    Bind { value: String },
    #[error("invalid {var}={value:?}: expected a duration with a unit, e.g. 60s or 10m")]
    Duration { var: &'static str, value: String },
    #[error("invalid TOKIO_CONSOLE_BUFFER_CAPACITY={value:?}: expected a whole number")]
    Capacity { value: String },
    #[error("invalid TOKIO_CONSOLE_RESOURCES={value:?}: expected true or false")]
    Resources { value: String },
    #[error("cannot listen on TOKIO_CONSOLE_BIND={addr}: {source}")]
    InUse {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the tokio-console thread: {0}")]
    Thread(std::io::Error),
}

impl ConsoleSettings {
    /// The address used when `TOKIO_CONSOLE_BIND` is unset (console-subscriber's default).
    pub const DEFAULT_BIND: &'static str = "127.0.0.1:6669";

    /// Reads and validates the variables listed in the module doc.
    pub fn from_env() -> Result<Self, ConsoleError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConsoleError> {
        let bind_value = get("TOKIO_CONSOLE_BIND").unwrap_or_else(|| Self::DEFAULT_BIND.to_owned());
        let bind = bind_value
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or(ConsoleError::Bind { value: bind_value })?;
        let duration = |var: &'static str| -> Result<Option<Duration>, ConsoleError> {
            get(var)
                .map(|value| {
                    humantime::parse_duration(&value)
                        .map_err(|_| ConsoleError::Duration { var, value })
                })
                .transpose()
        };
        let buffer_capacity = get("TOKIO_CONSOLE_BUFFER_CAPACITY")
            .map(|value| value.parse().map_err(|_| ConsoleError::Capacity { value }))
            .transpose()?;
        let resources = get("TOKIO_CONSOLE_RESOURCES")
            .map(|value| value.parse().map_err(|_| ConsoleError::Resources { value }))
            .transpose()?
            .unwrap_or(false);
        Ok(Self {
            bind,
            retention: duration("TOKIO_CONSOLE_RETENTION")?.unwrap_or(DEFAULT_RETENTION),
            publish_interval: duration("TOKIO_CONSOLE_PUBLISH_INTERVAL")?,
            buffer_capacity,
            record_path: get("TOKIO_CONSOLE_RECORD_PATH").map(PathBuf::from),
            resources,
        })
    }

    /// Binds the address once and lets it go, so "address in use" is a start-up error instead
    /// of a failure on the console's thread. (A process that grabs the port in the
    /// microseconds between this probe and the server's bind still makes that thread fail;
    /// it says so on stderr and the service goes on without its console.)
    pub fn probe_bind(&self) -> Result<(), ConsoleError> {
        TcpListener::bind(self.bind)
            .map(drop)
            .map_err(|source| ConsoleError::InUse {
                addr: self.bind,
                source,
            })
    }

    fn builder(&self) -> console_subscriber::Builder {
        let mut builder = ConsoleLayer::builder()
            .server_addr(self.bind)
            .retention(self.retention)
            .poll_duration_histogram_max(POLL_HISTOGRAM_MAX)
            .scheduled_duration_histogram_max(SCHEDULED_HISTOGRAM_MAX);
        if let Some(interval) = self.publish_interval {
            builder = builder.publish_interval(interval);
        }
        if let Some(capacity) = self.buffer_capacity {
            builder = builder.event_buffer_capacity(capacity);
        }
        if let Some(path) = &self.record_path {
            builder = builder.recording_path(path);
        }
        builder
    }
}

/// The console layer with its own filter, its gRPC server already running on a thread named
/// `console_subscriber`. Call [`ConsoleSettings::probe_bind`] first.
pub fn layer<S>(settings: &ConsoleSettings) -> Result<impl Layer<S>, ConsoleError>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let (layer, server) = settings.builder().build();
    let bind = settings.bind;
    std::thread::Builder::new()
        .name("console_subscriber".into())
        .spawn(move || {
            // The server's own tasks and spans must not be traced into the console.
            let _silence =
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|err| err.to_string())
                .and_then(|runtime| {
                    runtime
                        .block_on(server.serve())
                        .map_err(|err| err.to_string())
                });
            if let Err(err) = served {
                eprintln!("error: tokio-console endpoint on {bind} stopped: {err}");
            }
        })
        .map_err(ConsoleError::Thread)?;
    let filter = if settings.resources {
        FilterFn::new(tasks_and_resources as fn(&Metadata<'_>) -> bool)
    } else {
        FilterFn::new(tasks_only as fn(&Metadata<'_>) -> bool)
    };
    Ok(layer.with_filter(filter))
}

/// Task spans and the waker events that give wake counts and scheduled time: all the
/// console's task view needs.
fn tasks_only(meta: &Metadata<'_>) -> bool {
    if meta.is_span() {
        meta.name() == "runtime.spawn"
    } else {
        meta.target() == "tokio::task::waker"
    }
}

/// console-subscriber's own filter (as in `Builder::spawn()`): tasks, wakers, and every
/// resource, async-op and poll-op span and event.
fn tasks_and_resources(meta: &Metadata<'_>) -> bool {
    if meta.is_event() {
        meta.target().starts_with("runtime") || meta.target().starts_with("tokio")
    } else {
        meta.name().starts_with("runtime.") || meta.target().starts_with("tokio")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<ConsoleSettings, ConsoleError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConsoleSettings::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_and_valid_values() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults.bind, "127.0.0.1:6669".parse().unwrap());
        assert_eq!(defaults.retention, Duration::from_secs(10));
        assert!(!defaults.resources);
        let set = parse(&[
            ("TOKIO_CONSOLE_BIND", "0.0.0.0:7000"),
            ("TOKIO_CONSOLE_RETENTION", "60s"),
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "1000"),
            ("TOKIO_CONSOLE_RECORD_PATH", "console.rec"),
            ("TOKIO_CONSOLE_RESOURCES", "true"),
        ])
        .unwrap();
        assert_eq!(set.bind, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(set.retention, Duration::from_secs(60));
        assert_eq!(set.buffer_capacity, Some(1000));
        assert_eq!(set.record_path, Some("console.rec".into()));
        assert!(set.resources);
    }

    #[test]
    fn values_console_subscriber_would_panic_on_are_errors() {
        for (var, value) in [
            ("TOKIO_CONSOLE_BIND", "localhost"),
            ("TOKIO_CONSOLE_BIND", "6669"),
            ("TOKIO_CONSOLE_RETENTION", "60"),
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "soon"),
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "-1"),
            ("TOKIO_CONSOLE_RESOURCES", "yes"),
        ] {
            let err = parse(&[(var, value)]).expect_err(value).to_string();
            assert!(err.contains(var) && !err.contains('\n'), "{err}");
        }
    }
}
