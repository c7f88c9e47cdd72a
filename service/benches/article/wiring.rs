//! The article's tracing wiring, taken literally: a registry-wide `EnvFilter`,
//! `fmt::layer().json().with_current_span(true)` on a writer the caller picks, tracing-actix-web's
//! default root span (`TracingLogger::default()`), and an `#[instrument]`ed handler with one
//! event, on one route, `GET /api/orders/{id}`.
//!
//! Shared, with `#[path]`, by the example `examples/article_wiring.rs` (the server that
//! `python3 -m bench wiring` measures over TCP) and the benchmark `benches/request.rs` (the
//! same app driven in process), so both measure one wiring. This file sits in a subdirectory without a
//! `main.rs`, so cargo does not take it for a benchmark of its own.
//!
//! Not part of the lab: do not copy this one.

use actix_web::{
    body::MessageBody,
    dev::{ServiceFactory, ServiceRequest, ServiceResponse},
    web, App, Error,
};
use tracing::{info, instrument, Subscriber};
use tracing_actix_web::TracingLogger;
use tracing_subscriber::{fmt, fmt::MakeWriter, prelude::*, EnvFilter};

/// The article's handler: one span (`#[instrument]`) and one event per request.
#[instrument]
pub async fn get_order(id: web::Path<u64>) -> String {
    info!("loading order");
    format!(
        "{{\"order_id\":{},\"status\":\"shipped\"}}",
        id.into_inner()
    )
}

/// The app every worker serves: tracing-actix-web's root span around the one route.
pub fn app() -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(TracingLogger::default())
        .route("/api/orders/{id}", web::get().to(get_order))
}

/// The article's subscriber: `filter` on the whole registry, JSON lines with the current span
/// to `writer`.
pub fn subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry().with(filter).with(
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(writer),
    )
}
