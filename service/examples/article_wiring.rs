//! The article's tracing wiring, taken literally, as the baseline `python3 -m bench wiring`
//! compares the lab's wiring with: a registry-wide `EnvFilter`,
//! `fmt::layer().json().with_current_span(true)` through tracing-appender's default (lossy)
//! non-blocking stdout writer, tracing-actix-web's default root span, and an `#[instrument]`ed
//! handler with one event. One route, `GET /api/orders/{id}`, on `LISTEN_ADDR` with `WORKERS`
//! workers.
//!
//! The app and the subscriber live in `benches/article/wiring.rs`, shared with the in-process
//! benchmark `benches/request.rs`.
//!
//! Not part of the lab: do not copy this one.

use actix_web::HttpServer;
use tracing_subscriber::{util::SubscriberInitExt, EnvFilter};

#[path = "../benches/article/wiring.rs"]
mod wiring;

fn main() -> std::io::Result<()> {
    let (writer, _guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    wiring::subscriber(filter, writer).init();
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    actix_web::rt::System::new().block_on(
        HttpServer::new(wiring::app)
            .workers(workers)
            .bind(addr)?
            .run(),
    )
}
