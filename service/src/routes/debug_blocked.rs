//! `GET /debug/blocked[?since=…]`: the watchdog's record of recent blocked polls and worker
//! stalls, as JSON, for loadgen's suspects (`DEBUG_BLOCKED=false` turns it off: 404).
//!
//! `since` is an RFC 3339 time (`2026-11-30T12:00:00Z`) or milliseconds since the Unix epoch;
//! only entries still going on or ended at or after it are returned.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::{
    errors::ApiError,
    routes::AppState,
    watchdog::record::{self, BlockEntry},
};

#[derive(Debug, serde::Deserialize)]
pub struct SinceQuery {
    since: Option<String>,
}

pub async fn debug_blocked(
    state: web::Data<AppState>,
    query: web::Query<SinceQuery>,
) -> Result<HttpResponse, ApiError> {
    if !record::enabled() {
        return Err(ApiError::NotFound(
            "the block record is off (DEBUG_BLOCKED=false, or LONG_POLL_MS=0)".to_owned(),
        ));
    }
    let since = query.since.as_deref().map(parse_since).transpose()?;
    let now = SystemTime::now();
    let blocks: Vec<_> = record::recent(since)
        .iter()
        .map(|entry| entry_json(entry, now))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "instance": state.instance,
        "now": rfc3339(now),
        "max_entries": record::MAX_ENTRIES,
        "blocks": blocks,
    })))
}

fn parse_since(raw: &str) -> Result<SystemTime, ApiError> {
    if let Ok(ms) = raw.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_millis(ms));
    }
    humantime::parse_rfc3339_weak(raw).map_err(|_| {
        ApiError::BadRequest(
            "since must be an RFC 3339 time or milliseconds since the Unix epoch".to_owned(),
        )
    })
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

fn entry_json(entry: &BlockEntry, now: SystemTime) -> serde_json::Value {
    let end = entry.end.unwrap_or(now);
    json!({
        "seq": entry.seq,
        "kind": entry.kind.as_str(),
        "handler": entry.handler,
        "request_id": entry.request_id.as_deref(),
        "thread": &*entry.thread,
        "start": rfc3339(entry.start),
        "end": entry.end.map(rfc3339),
        "ongoing": entry.end.is_none(),
        "blocked_ms": end.duration_since(entry.start).unwrap_or_default().as_secs_f64() * 1000.0,
        "stack": entry.stack.as_deref(),
    })
}
