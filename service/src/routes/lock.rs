//! A mutex guard held across `.await`: `std::sync::Mutex` (the bug) beside
//! `tokio::sync::Mutex` (the fix). Both hold the lock for `hold_ms` (default `SLOW_DISK_MS`,
//! at most 2000) while awaiting a timer, as code that caches the result of a slow call does.
//!
//! With the std mutex, a second request that wants the lock blocks its worker thread inside
//! `lock()`. If the holder is parked on that same worker, it can never resume to release the
//! lock: a plain `lock()` would deadlock the worker forever. The lab keeps the blocking but
//! bounds it: [`lock_std_bounded`] spins on `try_lock` with short thread sleeps (pinning the
//! thread exactly like `lock()`) and gives up with a 503 after the hold time plus a margin.
//! With the tokio mutex the waiter yields, the holder resumes, and the worker keeps serving.
//!
//! clippy's `await_holding_lock` lint flags the bug at compile time; it is allowed here, once,
//! on purpose.

use std::{
    sync::{Mutex, MutexGuard, TryLockError},
    time::{Duration, Instant},
};

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tracing::info;

use super::AppState;
use crate::{errors::ApiError, request_id::RequestId};

/// The longest hold a request may ask for.
pub const MAX_HOLD_MS: u64 = 2000;

/// How much longer than the hold a std-mutex waiter blocks before it gives up.
const WAIT_MARGIN: Duration = Duration::from_millis(100);

static STD_COUNTER: Mutex<u64> = Mutex::new(0);
static TOKIO_COUNTER: tokio::sync::Mutex<u64> = tokio::sync::Mutex::const_new(0);

#[derive(Debug, Deserialize)]
pub struct HoldQuery {
    hold_ms: Option<u64>,
}

impl HoldQuery {
    fn hold(&self, state: &AppState) -> Result<Duration, ApiError> {
        match self.hold_ms {
            Some(ms) if ms > MAX_HOLD_MS => Err(ApiError::BadRequest(format!(
                "hold_ms must be at most {MAX_HOLD_MS}"
            ))),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(state.slow_disk.min(Duration::from_millis(MAX_HOLD_MS))),
        }
    }
}

/// BUG: a `std::sync::Mutex` guard held across an `.await`.
pub async fn lock_std(
    query: web::Query<HoldQuery>,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let hold = query.hold(&state)?;
    hold_std_lock(hold, &request_id).await
}

#[allow(clippy::await_holding_lock)] // the bug this route exists to show
#[tracing::instrument(name = "lock_std", skip_all, fields(request_id = %request_id))]
async fn hold_std_lock(hold: Duration, request_id: &RequestId) -> Result<HttpResponse, ApiError> {
    info!("waiting for lock");
    let mut guard = lock_std_bounded(&STD_COUNTER, hold + WAIT_MARGIN)?;
    info!("lock acquired");
    tokio::time::sleep(hold).await; // BUG: the guard stays held while this task is parked
    *guard += 1;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "counter": *guard })))
}

/// FIX: `tokio::sync::Mutex`, whose waiters yield instead of blocking the thread.
pub async fn lock_tokio(
    query: web::Query<HoldQuery>,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let hold = query.hold(&state)?;
    hold_tokio_lock(hold, &request_id).await
}

#[tracing::instrument(name = "lock_tokio", skip_all, fields(request_id = %request_id))]
async fn hold_tokio_lock(hold: Duration, request_id: &RequestId) -> Result<HttpResponse, ApiError> {
    info!("waiting for lock");
    let mut guard = TOKIO_COUNTER.lock().await; // FIX: waiting yields the worker
    info!("lock acquired");
    tokio::time::sleep(hold).await;
    *guard += 1;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "counter": *guard })))
}

/// `lock()` with a deadline: blocks the calling thread like `lock()` does, but gives up after
/// `max_wait` instead of deadlocking a worker whose own parked task holds the lock. A poisoned
/// lock is taken anyway: the counter cannot be left inconsistent.
#[inline(never)] // named in the watchdog's stacks
fn lock_std_bounded<T>(
    mutex: &Mutex<T>,
    max_wait: Duration,
) -> Result<MutexGuard<'_, T>, ApiError> {
    let deadline = Instant::now() + max_wait;
    loop {
        match mutex.try_lock() {
            Ok(guard) => return Ok(guard),
            Err(TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() >= deadline => {
                return Err(ApiError::Unavailable(
                    "gave up waiting for the std mutex: its holder is parked on a blocked worker"
                        .to_owned(),
                ))
            }
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}
