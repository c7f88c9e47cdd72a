//! Builds the HTTP server and runs it until a shutdown signal.
//!
//! [`Application::build`] binds the listener first (port 0 picks a free one; [`Application::port`]
//! tells which), so start-up errors surface before anything runs. [`Application::run_until_stopped`]
//! serves until SIGTERM or SIGINT, then stops accepting and lets in-flight requests finish, for
//! at most `SHUTDOWN_TIMEOUT_S`. actix-server's own signal handling is turned off because it
//! treats SIGINT as a hard stop; the lab wants both signals graceful. A client that closes its
//! connection ends it at once, dropping a handler that still waits (see `routes::abandon`).

use std::net::TcpListener;

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse},
    http::StatusCode,
    middleware::{from_fn, Condition, Next},
    web, App, Error, HttpResponse, HttpServer,
};
use anyhow::Context;

use crate::{
    config::{ConfigDir, Flavor, Settings},
    request_telemetry::RequestTelemetry,
    routes::{self, AppState},
    watchdog,
};

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `LISTEN_ADDR` and builds the server with every route and middleware.
    /// `console_addr` is where the canary's tokio-console endpoint listens, for the start-up line.
    pub fn build(
        settings: &Settings,
        console_addr: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen_addr)
            .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
        let local_addr = listener.local_addr()?;
        let config_dir = settings.resolve_config_dir();
        let state = web::Data::new(AppState::new(settings, &config_dir));
        let workers = settings.worker_count();
        let long_poll = settings.long_poll;
        let tracing = settings.request_tracing;
        // Before `listening`, which tools and tests take as the last start-up line.
        if let ConfigDir::Missing { tried } = &config_dir {
            let tried: Vec<_> = tried.iter().map(|dir| dir.display().to_string()).collect();
            tracing::warn!(
                tried = tried.join(", "),
                "no config folder: /config/... answers 404 until CONFIG_DIR names one"
            );
        }
        tracing::info!(
            addr = %local_addr,
            workers,
            flavor = Flavor::current().as_str(),
            instance = state.instance,
            version = env!("CARGO_PKG_VERSION"),
            console_addr = console_addr.map(tracing::field::display),
            config_dir = config_dir.found().map(|dir| tracing::field::display(dir.display())),
            "listening"
        );
        let server = HttpServer::new(move || {
            // The factory runs on each worker thread, inside its runtime.
            watchdog::spawn_heartbeat(long_poll);
            app(state.clone(), tracing)
        })
        .workers(workers)
        // A client that closes its side ends the connection and drops its handler's future:
        // no work for clients that have gone (routes::abandon, docs/client-disconnects.md).
        .h1_allow_half_closed(false)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_s)
        .listen(listener)
        .with_context(|| format!("cannot serve on {local_addr}"))?
        .run();
        Ok(Self {
            port: local_addr.port(),
            server,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        actix_web::rt::spawn(async move {
            let signal = shutdown_signal().await;
            tracing::info!(signal, "shutting down: draining in-flight requests");
            handle.stop(true).await;
        });
        self.server.await.context("server failed")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The app every worker serves: the routes, the header-size limit and, when `request_tracing`
/// is on, the request telemetry around them. Public for the in-process benchmarks.
pub fn app(
    state: web::Data<AppState>,
    request_tracing: bool,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .wrap(from_fn(reject_oversized_headers))
        // Outer: the root span, the request id and the access line around the rest.
        .wrap(Condition::new(request_tracing, RequestTelemetry))
        .app_data(state)
        .configure(routes::configure)
}

/// The most header bytes (names and values) a request may carry. actix-http accepts request
/// heads up to 128 KiB; nothing the lab serves needs more than a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Answers 431 with a JSON body when the request's headers exceed [`MAX_HEADER_BYTES`]. It runs
/// inside the request span, so the refusal has an access line and a request id.
async fn reject_oversized_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        let refusal = HttpResponse::build(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
            .json(serde_json::json!({ "error": format!("request headers exceed {MAX_HEADER_BYTES} bytes") }));
        return Ok(req.into_response(refusal).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Resolves on the first SIGTERM or SIGINT, naming it.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
