//! A detached background task that blocks (the bug) beside one that offloads (the fix).
//!
//! `GET /background/blocking?ms=` answers 202 at once and leaves behind a task spawned on the
//! worker, outside the request's span (a spawned future does not inherit it), that blocks the
//! thread for `ms` (default 200, at most 2000). No span names it, so only the watchdog's
//! heartbeat (`worker stall`) and a profiler can catch it. `GET /background/offload?ms=` runs
//! the same sleep on the blocking pool.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::errors::ApiError;

/// The longest block a request may ask for.
pub const MAX_BACKGROUND_MS: u64 = 2000;
const DEFAULT_BACKGROUND_MS: u64 = 200;

#[derive(Debug, Deserialize)]
pub struct BackgroundQuery {
    ms: Option<u64>,
}

impl BackgroundQuery {
    fn duration(&self) -> Result<Duration, ApiError> {
        match self.ms.unwrap_or(DEFAULT_BACKGROUND_MS) {
            ms if ms > MAX_BACKGROUND_MS => Err(ApiError::BadRequest(format!(
                "ms must be at most {MAX_BACKGROUND_MS}"
            ))),
            ms => Ok(Duration::from_millis(ms)),
        }
    }
}

/// BUG: a detached task that blocks the worker, outside any span.
pub async fn background_blocking(
    query: web::Query<BackgroundQuery>,
) -> Result<HttpResponse, ApiError> {
    let work = query.duration()?;
    actix_web::rt::spawn(async move { std::thread::sleep(work) });
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({ "scheduled_ms": work.as_millis() as u64 })))
}

/// FIX: the same work on the blocking pool.
pub async fn background_offload(
    query: web::Query<BackgroundQuery>,
) -> Result<HttpResponse, ApiError> {
    let work = query.duration()?;
    actix_web::rt::spawn(async move {
        let _ = web::block(move || std::thread::sleep(work)).await;
    });
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({ "scheduled_ms": work.as_millis() as u64 })))
}
