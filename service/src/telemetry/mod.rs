//! The tracing wiring, in one place: what users of the lab copy into production.
//!
//! - One `tracing_subscriber::registry()`. Every layer filters for itself alone: the output
//!   layers with their **own** `EnvFilter` from `RUST_LOG` (the JSON layer asks it directly,
//!   the pretty one through a per-layer filter), the watchdog's and the console's by their own
//!   rules. A registry-wide filter would also decide for the canary's console layer and hide
//!   tokio's task spans from it.
//! - JSON lines (current span and span list) for shipping, written by the lab's own layer
//!   ([`mod@json_layer`]); `pretty` for people. Spans emit a close event with `time.busy` and
//!   `time.idle`, so one log line shows a blocked handler.
//! - Writers are lossless and non-blocking ([`batch_writer`]): lines are batched for a writer
//!   thread, and when its buffer is full the logging thread waits rather than dropping lines.
//!   Stdout always; tracing-appender's rolling JSON files (daily, 7 kept) when `LOG_DIR` is set.
//! - The canary (cargo feature `console`) adds console-subscriber's layer to the same registry
//!   (built by `console::layer`, never `init()`, which would install a second global
//!   subscriber); see the `console` module (canary builds) for its settings.
//! - The blocking watchdog's layer ([`crate::watchdog`]) joins the same registry, in every build.
//! - The returned [`TelemetryGuard`] flushes the writers when dropped; `main` keeps it alive
//!   until the server has fully stopped.

use std::io::{self, Write};

use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::{
    fmt::{self, format::FmtSpan, writer::MakeWriterExt},
    layer::SubscriberExt,
    util::SubscriberInitExt,
    EnvFilter, Layer, Registry,
};

use crate::config::{LogFormat, Settings};

pub mod batch_writer;
pub mod json;
pub mod json_layer;

use crate::request_telemetry::ROOT_SPAN;
use batch_writer::{BatchWriter, BatchWriterGuard};

/// A layer on the bare registry; boxed so optional layers compose without type gymnastics.
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// How many daily log files are kept in `LOG_DIR`.
pub const MAX_LOG_FILES: usize = 7;

/// Keeps the log writers' background threads alive; dropping it flushes them.
#[must_use = "dropping the guard stops the log writers"]
pub struct TelemetryGuard {
    _writers: Vec<BatchWriterGuard>,
    /// Where tokio-console can attach (canary builds only).
    pub console_addr: Option<std::net::SocketAddr>,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("cannot write logs to LOG_DIR {dir}: {reason}")]
    LogDir { dir: String, reason: String },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    #[cfg(feature = "console")]
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

/// Installs the global subscriber described in the module doc.
pub fn init(settings: &Settings) -> Result<TelemetryGuard, TelemetryError> {
    let mut guards = Vec::new();
    let (stdout, guard) = lossless_writer(stdout_sink(), "log-stdout");
    guards.push(guard);
    let file = match &settings.log_dir {
        Some(dir) => {
            let (file, guard) = lossless_writer(Box::new(rolling_files(dir)?), "log-file");
            guards.push(guard);
            Some(file)
        }
        None => None,
    };
    let (console, console_addr) = console_layer()?;
    let mut layers: Vec<BoxedLayer> = console.into_iter().collect();
    layers.extend(request_layers(settings, stdout, file)?);
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard {
        _writers: guards,
        console_addr,
    })
}

/// A lossless non-blocking writer over `sink`, as [`init`] builds it for stdout and the files:
/// batched writes, and the first write error reported once. Public for the benchmarks.
pub fn lossless_writer(
    sink: Box<dyn Write + Send>,
    name: &'static str,
) -> (BatchWriter, BatchWriterGuard) {
    BatchWriter::new(ReportErrorsOnce::new(sink, name), name)
}

/// Standard output for the log thread: a duplicate of its descriptor as a plain file, so a
/// batch of lines is one `write(2)` without `Stdout`'s lock and its scan for the last newline
/// (the writer thread already batches whole lines). `Stdout` itself if it cannot be duplicated.
fn stdout_sink() -> Box<dyn Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(std::io::stdout()),
    }
}

/// Every layer but the canary's console layer: the watchdog's and the outputs `settings` asks
/// for. Public so the benchmarks measure exactly what [`init`] installs.
pub fn request_layers(
    settings: &Settings,
    stdout: BatchWriter,
    file: Option<BatchWriter>,
) -> Result<Vec<BoxedLayer>, TelemetryError> {
    let mut layers: Vec<BoxedLayer> = Vec::new();
    layers.extend(
        crate::watchdog::layer(crate::watchdog::Options {
            threshold: settings.long_poll,
            root_span: ROOT_SPAN,
            capture_stacks: settings.blocked_stacks,
            keep_record: settings.debug_blocked,
        })
        .map(Layer::boxed),
    );
    // When `RUST_LOG` rejects everything, no output layer at all: even a layer whose filter
    // rejects everything is asked about every span's enter, exit and close.
    if !filters_out_everything(&settings.rust_log)? {
        output_layers(&mut layers, settings, stdout, file)?;
    }
    Ok(layers)
}

/// Whether `RUST_LOG` turns every target off (`off`, or only `off` directives).
fn filters_out_everything(filter: &str) -> Result<bool, TelemetryError> {
    let hint = EnvFilter::try_new(filter)?.max_level_hint();
    Ok(hint == Some(tracing_subscriber::filter::LevelFilter::OFF))
}

/// The JSON or pretty layer to stdout, and the JSON layer to the rolling files if any.
fn output_layers(
    layers: &mut Vec<BoxedLayer>,
    settings: &Settings,
    stdout: BatchWriter,
    file: Option<BatchWriter>,
) -> Result<(), TelemetryError> {
    match (settings.log_format, file) {
        (LogFormat::Json, None) => layers.push(json_layer(stdout, &settings.rust_log)?),
        (LogFormat::Json, Some(file)) => {
            layers.push(json_layer(stdout.and(file), &settings.rust_log)?)
        }
        (LogFormat::Pretty, file) => {
            layers.push(pretty_layer(stdout, &settings.rust_log)?);
            if let Some(file) = file {
                layers.push(json_layer(file, &settings.rust_log)?);
            }
        }
    }
    Ok(())
}

/// The canary's console layer and the address it serves on. It carries its own filter
/// ([`crate::console::layer`]), untouched by `RUST_LOG`.
#[cfg(feature = "console")]
fn console_layer() -> Result<(Option<BoxedLayer>, Option<std::net::SocketAddr>), TelemetryError> {
    let settings = crate::console::ConsoleSettings::from_env()?;
    settings.probe_bind()?;
    let layer = crate::console::layer(&settings)?;
    Ok((Some(layer.boxed()), Some(settings.bind)))
}

/// Release builds have no console layer.
#[cfg(not(feature = "console"))]
fn console_layer() -> Result<(Option<BoxedLayer>, Option<std::net::SocketAddr>), TelemetryError> {
    Ok((None, None))
}

/// JSON lines ([`json`]) for what `filter` enables: event fields under `fields`, the current
/// span under `span`, the span list under `spans`, and a close line per span (but the
/// request's root span) with its busy and idle time.
pub fn json_layer<W>(writer: W, filter: &str) -> Result<BoxedLayer, TelemetryError>
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    Ok(json_layer::JsonLayer::new(writer, filter, ROOT_SPAN)?.boxed())
}

fn pretty_layer(writer: BatchWriter, filter: &str) -> Result<BoxedLayer, TelemetryError> {
    Ok(fmt::layer()
        .pretty()
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(writer)
        .with_filter(EnvFilter::try_new(filter)?)
        .boxed())
}

/// Daily-rotated `service.YYYY-MM-DD.json` files, the oldest pruned beyond [`MAX_LOG_FILES`].
/// The directory is checked first: tracing-appender's builder prints its own complaint about an
/// unusable directory before returning its error, and a start-up failure should be one line.
fn rolling_files(dir: &std::path::Path) -> Result<RollingFileAppender, TelemetryError> {
    let unusable = |reason: String| TelemetryError::LogDir {
        dir: dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|err| unusable(err.to_string()))?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("service")
        .filename_suffix("json")
        .max_log_files(MAX_LOG_FILES)
        .build(dir)
        .map_err(|err| unusable(err.to_string()))
}

/// A log sink that reports its first write error on stderr. tracing-appender's writer thread
/// drops write errors silently; a full disk or a vanished log volume should be said once,
/// while stdout output (a separate writer) goes on.
struct ReportErrorsOnce {
    sink: Box<dyn Write + Send>,
    name: &'static str,
    reported: bool,
}

impl ReportErrorsOnce {
    fn new(sink: Box<dyn Write + Send>, name: &'static str) -> Self {
        Self {
            sink,
            name,
            reported: false,
        }
    }

    fn report<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(err) = &result {
            if !std::mem::replace(&mut self.reported, true) {
                eprintln!("error: {} cannot write log lines ({err}); reported once, other outputs continue", self.name);
            }
        }
        result
    }
}

impl Write for ReportErrorsOnce {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.sink.write(buf);
        self.report(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.sink.flush();
        self.report(result)
    }
}
