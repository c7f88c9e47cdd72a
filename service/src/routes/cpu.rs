//! CPU-bound work in a handler: run inline on the worker (the bug) beside the same work on the
//! blocking pool (the fix). `ms` (default 200, at most 2000) is how long the work spins.
//!
//! Unlike the other two bugs this one burns CPU, so it is the one an on-CPU flamegraph shows
//! (under [`burn_cpu`]).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use actix_web::{web, HttpResponse};
use tracing::info;

use super::{abandon, WorkQuery};
use crate::{errors::ApiError, request_id::RequestId};

/// BUG: the loop runs on the worker thread.
pub async fn cpu_inline(
    query: web::Query<WorkQuery>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let work = query.duration()?;
    cpu_inline_work(work, &request_id).await
}

#[tracing::instrument(name = "cpu_inline", skip_all, fields(request_id = %request_id, ms = work.as_millis() as u64))]
async fn cpu_inline_work(work: Duration, request_id: &RequestId) -> Result<HttpResponse, ApiError> {
    info!("burning cpu");
    let rounds = burn_cpu(work); // BUG: nothing else runs on this worker meanwhile
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rounds": rounds })))
}

/// FIX: the same loop on the blocking pool.
pub async fn cpu_offload(
    query: web::Query<WorkQuery>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let work = query.duration()?;
    cpu_offload_work(work, &request_id).await
}

#[tracing::instrument(name = "cpu_offload", skip_all, fields(request_id = %request_id, ms = work.as_millis() as u64))]
async fn cpu_offload_work(
    work: Duration,
    request_id: &RequestId,
) -> Result<HttpResponse, ApiError> {
    info!("burning cpu");
    let rounds = abandon::noted("blocking pool", web::block(move || burn_cpu(work))).await?; // FIX
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rounds": rounds })))
}

/// Spins for `work` of wall time doing integer arithmetic the optimiser cannot remove.
#[inline(never)]
pub fn burn_cpu(work: Duration) -> u64 {
    let start = Instant::now();
    let mut rounds = 0u64;
    let mut acc = 0x9E37_79B9_7F4A_7C15u64;
    while start.elapsed() < work {
        for _ in 0..1000 {
            acc = black_box(acc.rotate_left(5) ^ acc.wrapping_mul(0x100_0000_01B3));
        }
        rounds += 1;
    }
    black_box(acc);
    rounds
}
