//! The per-request telemetry middleware: every request gets a root span `request` carrying its
//! id and method, an `x-request-id` response header, and one INFO access line (`request
//! finished`: method, route, status, latency) when its response is ready.
//!
//! **Why not tracing-actix-web's `TracingLogger`**, which the lab used first: it ignores an
//! incoming `x-request-id`, never sets the response header, and does per-request work the lab
//! then paid for twice (an id of its own beside the lab's, a clone of the span in the request's
//! extensions, a body wrapper that re-enters the span on every poll, and a second match of the
//! route before routing). This middleware does only what the lab's log lines need: one id, one
//! span, one event, and the route read after routing, by the matched resource's name. What
//! that was worth per request is measured in `docs/benchmarks.md` ("what each change was
//! worth").
//!
//! The route is on the access line, not on the span: it is known only once the router has run,
//! and recording it into the span afterwards would make every line before it differ.

use std::{
    future::{ready, Future, Ready},
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    http::{header::HeaderValue, Method},
    Error, HttpRequest,
};
use tracing::Span;

use crate::{
    request_id::{self, RequestId},
    watchdog,
};

/// The name of every request's root span.
pub const ROOT_SPAN: &str = "request";

/// The middleware; wrap the whole app with it (see [`crate::startup`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTelemetry;

impl<S, B> Transform<S, ServiceRequest> for RequestTelemetry
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestTelemetryService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestTelemetryService { service }))
    }
}

/// [`RequestTelemetry`] around one worker's copy of the app.
#[derive(Debug)]
pub struct RequestTelemetryService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestTelemetryService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = InRequestSpan<S::Future>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // Not `tracing::enabled!` to skip this clock read when the access line is filtered out:
        // with per-layer filters it leaves a stale filter decision behind, and the next span
        // (this request's) would go unseen by the watchdog's layer.
        let started = Instant::now();
        let (id, header) = RequestId::for_request(&req);
        let method = req.method().clone();
        // A root by construction (`parent: None`): no current span to look up, and on the
        // canary not a child of the tokio task that happens to poll the connection.
        let span = tracing::info_span!(
            parent: None,
            ROOT_SPAN,
            request_id = id.as_str(),
            method = method.as_str()
        );
        // Not entered here: `call` only routes and builds the handler's future; the handler's
        // code runs when that future is polled, inside the span.
        let inner = self.service.call(req);
        InRequestSpan {
            inner,
            span,
            id,
            header: Some(header),
            method,
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// The rest of the app's work on one request, polled inside the request's span.
    pub struct InRequestSpan<F> {
        #[pin]
        inner: F,
        span: Span,
        id: RequestId,
        // The `x-request-id` response header's value, moved into the response.
        header: Option<HeaderValue>,
        method: Method,
        started: Instant,
    }
}

impl<F, B> Future for InRequestSpan<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let span: &Span = this.span;
        let _entered = span.enter();
        // Dropped first, still inside the span: the watchdog's closing line is the request's.
        let _polling = watchdog::poll_request(this.id, span);
        let _current = this.id.enter();
        let mut outcome = std::task::ready!(this.inner.poll(cx));
        // The field values are computed only when the line is enabled. An error becomes a
        // response after this middleware; its status is already decided.
        tracing::info!(
            // The request's span by name: the same line as inside it, without finding the
            // current span (two look-ups) first.
            parent: span,
            // A `str`, not the format arguments a trailing literal becomes: the same line,
            // without a round through `fmt` to write it.
            message = "request finished",
            method = this.method.as_str(),
            route = outcome
                .as_ref()
                .map_or(UNMATCHED, |res| route(res.request())),
            status = status(&outcome),
            // Whole microseconds: the line stays short, and nothing finer is meaningful here.
            // (Through u64: a u128-to-float conversion is a library call.)
            latency_ms = this.started.elapsed().as_micros() as u64 as f64 / 1000.0,
        );
        if let (Ok(res), Some(header)) = (&mut outcome, this.header.take()) {
            res.headers_mut()
                .insert(request_id::HEADER_NAME.clone(), header);
        }
        Poll::Ready(outcome)
    }
}

/// The status the client gets, for a response or for an error actix-web will turn into one.
fn status<B>(outcome: &Result<ServiceResponse<B>, Error>) -> u16 {
    match outcome {
        Ok(res) => res.status().as_u16(),
        Err(err) => err.as_response_error().status_code().as_u16(),
    }
}

/// The access line's `route` when no route matched.
const UNMATCHED: &str = "unmatched";

/// The matched route pattern, never the raw path, so `route` stays a low-cardinality field.
/// Every route is named after its pattern ([`crate::routes`]); after routing, actix-web finds
/// the name from the matched resource without re-running the router or allocating.
fn route(request: &HttpRequest) -> &str {
    request.match_name().unwrap_or(UNMATCHED)
}
