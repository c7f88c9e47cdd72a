//! The routes: the victim, and the bug zoo with each bug beside its fix.
//!
//! | route | what it does to the worker thread |
//! |---|---|
//! | `GET /healthz` | nothing: status, version, flavor, instance |
//! | `GET /api/orders/{id}` | the victim: awaits a short simulated dependency |
//! | `GET /config/sync/{name}` | BUG: `std::fs` + emulated slow disk on the worker |
//! | `GET /config/async/{name}` | FIX: the same work on the blocking pool |
//! | `GET /lock/std` | BUG: `std::sync::Mutex` guard held across `.await` |
//! | `GET /lock/tokio` | FIX: `tokio::sync::Mutex` |
//! | `GET /cpu/inline?ms=` | BUG: CPU-bound loop on the worker |
//! | `GET /cpu/offload?ms=` | FIX: the same loop on the blocking pool |
//! | `GET /background/blocking?ms=` | BUG: a detached task blocks the worker, outside any span |
//! | `GET /background/offload?ms=` | FIX: the detached work on the blocking pool |
//! | `GET /debug/blocked[?since=]` | nothing: the watchdog's record of recent blocks |

use std::{path::PathBuf, time::Duration};

use actix_web::{web, FromRequest, Handler, Resource, Responder};

use crate::{config::Flavor, config::Settings, errors::ApiError};

pub mod background;
pub mod config_read;
pub mod cpu;
pub mod debug_blocked;
pub mod health;
pub mod lock;
pub mod orders;

/// What the handlers need from the settings, shared by every worker.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config_dir: PathBuf,
    pub slow_disk: Duration,
    pub dependency: Duration,
    pub flavor: Flavor,
    pub instance: String,
}

impl AppState {
    pub fn new(settings: &Settings) -> Self {
        Self {
            config_dir: settings.config_dir.clone(),
            slow_disk: settings.slow_disk,
            dependency: settings.dependency,
            flavor: Flavor::current(),
            instance: settings.instance_name(),
        }
    }
}

/// `?ms=`: how long a handler works, with a default and a cap (CPU burn, detached block).
#[derive(Debug, serde::Deserialize)]
pub struct WorkQuery {
    ms: Option<u64>,
}

impl WorkQuery {
    /// The longest work a request may ask for.
    pub const MAX_MS: u64 = 2000;
    const DEFAULT_MS: u64 = 200;

    /// The requested duration (default 200 ms); more than [`Self::MAX_MS`] is a 400.
    pub fn duration(&self) -> Result<Duration, ApiError> {
        match self.ms.unwrap_or(Self::DEFAULT_MS) {
            ms if ms > Self::MAX_MS => Err(ApiError::BadRequest(format!(
                "ms must be at most {}",
                Self::MAX_MS
            ))),
            ms => Ok(Duration::from_millis(ms)),
        }
    }
}

/// Registers every route, and makes extractor failures (bad path or query) JSON 400s.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::BadRequest(err.to_string()).into()),
    )
    .service(get("/healthz", health::healthz))
    .service(get("/api/orders/{id}", orders::get_order))
    .service(get("/config/sync/{name:.*}", config_read::config_sync))
    .service(get("/config/async/{name:.*}", config_read::config_async))
    .service(get("/lock/std", lock::lock_std))
    .service(get("/lock/tokio", lock::lock_tokio))
    .service(get("/cpu/inline", cpu::cpu_inline))
    .service(get("/cpu/offload", cpu::cpu_offload))
    .service(get("/background/blocking", background::background_blocking))
    .service(get("/background/offload", background::background_offload))
    .service(get("/debug/blocked", debug_blocked::debug_blocked))
    .default_service(web::to(not_found));
}

/// A GET resource named after its own pattern: the access line reads the matched route with
/// `HttpRequest::match_name`, a borrowed `&str`, where `match_pattern` would allocate a `String`
/// per request.
fn get<F, Args>(pattern: &'static str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(pattern)
        .name(pattern)
        .route(web::get().to(handler))
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".to_owned()))
}
