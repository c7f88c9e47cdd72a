//! A detached background task that blocks (the bug) beside one that offloads (the fix).
//!
//! `GET /background/blocking?ms=` answers 202 at once and leaves behind a task spawned on the
//! worker, outside the request's span (a spawned future does not inherit it), that blocks the
//! thread for `ms` (default 200, at most 2000). No span names it, so only the watchdog's
//! heartbeat (`worker stall`) and a profiler can catch it. `GET /background/offload?ms=` runs
//! the same sleep on the blocking pool.

use actix_web::{web, HttpResponse};

use super::WorkQuery;
use crate::errors::ApiError;

/// BUG: a detached task that blocks the worker, outside any span.
pub async fn background_blocking(query: web::Query<WorkQuery>) -> Result<HttpResponse, ApiError> {
    let work = query.duration()?;
    actix_web::rt::spawn(async move { std::thread::sleep(work) });
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({ "scheduled_ms": work.as_millis() as u64 })))
}

/// FIX: the same work on the blocking pool.
pub async fn background_offload(query: web::Query<WorkQuery>) -> Result<HttpResponse, ApiError> {
    let work = query.duration()?;
    actix_web::rt::spawn(async move {
        let _ = web::block(move || std::thread::sleep(work)).await;
    });
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({ "scheduled_ms": work.as_millis() as u64 })))
}
