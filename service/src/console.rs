//! The canary's tokio-console endpoint (cargo feature `console`).
//!
//! console-subscriber reads its settings from the environment in
//! `Builder::with_default_env()` and **panics** on values it cannot parse
//! (`TOKIO_CONSOLE_BIND=localhost`, `TOKIO_CONSOLE_RETENTION=60` without a unit), and its
//! server thread panics when the address is taken. A canary that dies with a backtrace at
//! start-up helps nobody, so [`ConsoleSettings::from_env`] parses the same variables first and
//! turns each problem into a one-line error (the binary exits 2), and [`ConsoleSettings::probe_bind`]
//! checks that the address can be bound before the server thread tries.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `TOKIO_CONSOLE_BIND` | gRPC listen address (`HOST:PORT`) | `127.0.0.1:6669` |
//! | `TOKIO_CONSOLE_RETENTION` | how long finished tasks are kept (`60s`, `10m`; unit required) | `1h` |
//! | `TOKIO_CONSOLE_PUBLISH_INTERVAL` | how often updates are sent (`1s`, `500ms`) | `1s` |
//! | `TOKIO_CONSOLE_BUFFER_CAPACITY` | events buffered before the aggregator drops some | `102400` |
//! | `TOKIO_CONSOLE_RECORD_PATH` | also record events to this file | unset |

use std::{
    net::{SocketAddr, TcpListener, ToSocketAddrs},
    time::Duration,
};

/// The console settings the builder will read, validated.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub bind: SocketAddr,
    pub retention: Option<Duration>,
    pub publish_interval: Option<Duration>,
    pub buffer_capacity: Option<usize>,
}

/// A console setting console-subscriber would panic on.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("invalid TOKIO_CONSOLE_BIND={value:?}: expected HOST:PORT, e.g. 0.0.0.0:6669")]
    Bind { value: String },
    #[error("invalid {var}={value:?}: expected a duration with a unit, e.g. 60s or 10m")]
    Duration { var: &'static str, value: String },
    #[error("invalid TOKIO_CONSOLE_BUFFER_CAPACITY={value:?}: expected a whole number")]
    Capacity { value: String },
    #[error("cannot listen on TOKIO_CONSOLE_BIND={addr}: {source}")]
    InUse {
        addr: SocketAddr,
        source: std::io::Error,
    },
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
        Ok(Self {
            bind,
            retention: duration("TOKIO_CONSOLE_RETENTION")?,
            publish_interval: duration("TOKIO_CONSOLE_PUBLISH_INTERVAL")?,
            buffer_capacity,
        })
    }

    /// Binds the address once and lets it go, so "address in use" is a start-up error instead
    /// of a panic on the console's thread. (A process that grabs the port in the microseconds
    /// between this probe and the server's bind still makes that thread fail.)
    pub fn probe_bind(&self) -> Result<(), ConsoleError> {
        TcpListener::bind(self.bind)
            .map(drop)
            .map_err(|source| ConsoleError::InUse {
                addr: self.bind,
                source,
            })
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
        let set = parse(&[
            ("TOKIO_CONSOLE_BIND", "0.0.0.0:7000"),
            ("TOKIO_CONSOLE_RETENTION", "60s"),
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "1000"),
        ])
        .unwrap();
        assert_eq!(set.bind, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(set.retention, Some(Duration::from_secs(60)));
        assert_eq!(set.buffer_capacity, Some(1000));
    }

    #[test]
    fn values_console_subscriber_would_panic_on_are_errors() {
        for (var, value) in [
            ("TOKIO_CONSOLE_BIND", "localhost"),
            ("TOKIO_CONSOLE_BIND", "6669"),
            ("TOKIO_CONSOLE_RETENTION", "60"),
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "soon"),
            ("TOKIO_CONSOLE_BUFFER_CAPACITY", "-1"),
        ] {
            let err = parse(&[(var, value)]).expect_err(value).to_string();
            assert!(err.contains(var) && !err.contains('\n'), "{err}");
        }
    }
}
