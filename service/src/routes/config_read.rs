//! The article's bug beside its fix: reading a config file inside an async handler.
//!
//! Both handlers do exactly the same work, [`read_config_blocking`]: `std::fs::read_to_string`
//! followed by the emulated slow disk. The bug runs it on the actix worker thread, which then
//! serves nobody else until it returns; the fix hands it to the blocking pool and awaits it.
//!
//! **Why the disk latency is emulated.** A laptop's page cache answers a small read in
//! microseconds, and a lab cannot rely on a slow volume being there. So after the real read the
//! handler sleeps with `std::thread::sleep` (`SLOW_DISK_MS`): a real blocking system call
//! (`clock_nanosleep`) that parks the thread exactly as a read from a slow network disk would.
//! tokio-console, the watchdog and the off-CPU flamegraph all see it as such.

use std::{path::Path, time::Duration};

use actix_web::{web, HttpResponse};
use tracing::info;

use super::AppState;
use crate::{errors::ApiError, request_id::RequestId};

/// The longest config name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// BUG: blocking file I/O on the worker thread.
pub async fn config_sync(
    name: web::Path<String>,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let name = ConfigName::parse(&name)?;
    load_config_sync(&state, &name, &request_id).await
}

#[tracing::instrument(name = "config_sync", skip_all, fields(request_id = %request_id, config = name.as_str()))]
async fn load_config_sync(
    state: &AppState,
    name: &ConfigName,
    request_id: &RequestId,
) -> Result<HttpResponse, ApiError> {
    info!("loading config");
    // BUG: this blocks the actix worker for the whole read plus the slow disk. Every other
    // connection this worker owns waits, and nothing in the async code says so.
    let body = read_config_blocking(&state.config_dir, name, state.slow_disk)?;
    info!(bytes = body.len(), "loaded config");
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body))
}

/// FIX: the same read and the same emulated latency, moved to the blocking pool.
pub async fn config_async(
    name: web::Path<String>,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let name = ConfigName::parse(&name)?;
    load_config_async(&state, name, &request_id).await
}

#[tracing::instrument(name = "config_async", skip_all, fields(request_id = %request_id, config = name.as_str()))]
async fn load_config_async(
    state: &AppState,
    name: ConfigName,
    request_id: &RequestId,
) -> Result<HttpResponse, ApiError> {
    info!("loading config");
    let (dir, slow_disk) = (state.config_dir.clone(), state.slow_disk);
    // FIX: `web::block` is tokio's `spawn_blocking`; the worker awaits and serves others.
    let body = web::block(move || read_config_blocking(&dir, &name, slow_disk)).await??;
    info!(bytes = body.len(), "loaded config");
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(body))
}

/// The blocking work both handlers share: a real read, then the emulated slow disk.
#[inline(never)] // named in the watchdog's stacks and in flamegraphs
fn read_config_blocking(
    dir: &Path,
    name: &ConfigName,
    slow_disk: Duration,
) -> Result<String, ApiError> {
    let body =
        std::fs::read_to_string(dir.join(name.as_str())).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => {
                ApiError::NotFound(format!("no config named {}", name.as_str()))
            }
            _ => ApiError::Internal(
                anyhow::Error::new(err).context(format!("reading config {}", name.as_str())),
            ),
        })?;
    std::thread::sleep(slow_disk);
    Ok(body)
}

/// A config name that is safe to join onto the config directory: a plain file name of
/// `[A-Za-z0-9._-]`, at most [`MAX_NAME_LEN`] bytes, not starting with a dot. An allow-list
/// rejects every traversal form at once (`..`, `/`, `\`, absolute paths, NUL, and whatever
/// percent-decoding leaves behind such as `..%2F`) before any file is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigName(String);

impl ConfigName {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let reject = |why: &str| Err(ApiError::BadRequest(format!("invalid config name: {why}")));
        if raw.is_empty() {
            return reject("empty");
        }
        if raw.len() > MAX_NAME_LEN {
            return reject("longer than 128 bytes");
        }
        if raw.starts_with('.') {
            return reject("must not start with a dot");
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return reject("only letters, digits, '.', '_' and '-' are allowed");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_file_names() {
        for ok in ["app.toml", "a", "feature-flags_v2.json"] {
            assert_eq!(ConfigName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_traversal_and_junk() {
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "/etc/passwd",
            "..%2Fetc",
            "a\0b",
            ".hidden",
            &long,
            "a b",
        ] {
            assert!(ConfigName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
