//! Request ids: one per request, kept from the client when it is safe, echoed in the response,
//! and carried by the request's root span so every log line of the request names it.
//!
//! tracing-actix-web deliberately ignores an incoming `x-request-id` and never sets the
//! response header; the lab needs both, so the root span is built here ([`LabRootSpan`]) and
//! the header is set by the access-log middleware ([`crate::startup`]).

use std::{fmt, time::Instant};

use actix_web::{
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    Error, FromRequest, HttpMessage, HttpRequest,
};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

/// Request and response header carrying the id.
pub const HEADER: &str = "x-request-id";

/// The longest client-supplied id that is kept.
pub const MAX_LEN: usize = 64;

/// A request's id: the client's, when it passes [`RequestId::from_client`], or a fresh UUID v7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// Keeps a client-supplied id only when it is 1–64 characters of `[A-Za-z0-9._:-]`, so it
    /// can go into a log line, a header and a LogQL query without escaping.
    pub fn from_client(raw: &[u8]) -> Option<Self> {
        let valid = (1..=MAX_LEN).contains(&raw.len())
            && raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        // Validated as ASCII above, so the conversion cannot fail.
        valid.then(|| Self(String::from_utf8_lossy(raw).into_owned()))
    }

    /// A fresh time-ordered UUID v7 (uuid's `fast-rng`: no system call per id).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The client's id if valid, else a fresh one. The invalid value is dropped, never logged.
    pub fn for_request(req: &ServiceRequest) -> Self {
        req.headers()
            .get(HEADER)
            .and_then(|value| Self::from_client(value.as_bytes()))
            .unwrap_or_else(Self::generate)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Handlers take the id as an extractor to put it on their own spans.
impl FromRequest for RequestId {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        std::future::ready(id.ok_or_else(|| {
            actix_web::error::ErrorInternalServerError("request id middleware missing")
        }))
    }
}

/// When the request started and the route it matched, for the access line: matching the
/// route pattern walks the router, so it is done once per request.
#[derive(Debug, Clone)]
pub struct RequestStart {
    pub at: Instant,
    /// The matched route pattern, or `unmatched`; never the raw path.
    pub route: String,
}

/// Builds each request's root span `request` with `request_id`, `method` and `route` fixed at
/// creation. Status and latency go on the access event instead of being recorded into the span
/// afterwards: a `Span::record` makes the JSON formatter re-serialise the span's fields.
pub struct LabRootSpan;

impl RootSpanBuilder for LabRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = RequestId::for_request(request);
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let span = tracing::info_span!("request", request_id = %id, method = %request.method(), route = route);
        let mut extensions = request.extensions_mut();
        extensions.insert(id);
        extensions.insert(RequestStart {
            at: Instant::now(),
            route,
        });
        span
    }

    fn on_request_end<B: MessageBody>(_span: Span, _outcome: &Result<ServiceResponse<B>, Error>) {
        // The access event is emitted by the access-log middleware, which also sets the header.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_safe_client_ids() {
        for ok in ["a", "req-1", "A.b_c:d-e", &"x".repeat(64)] {
            assert_eq!(RequestId::from_client(ok.as_bytes()).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_unsafe_client_ids() {
        for bad in [
            "",
            "has space",
            "new\nline",
            "quote\"",
            "semi;colon",
            "ü",
            &"x".repeat(65),
        ] {
            assert!(
                RequestId::from_client(bad.as_bytes()).is_none(),
                "{bad:?} was kept"
            );
        }
    }

    #[test]
    fn generated_ids_are_uuid_v7() {
        let id = RequestId::generate();
        let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_ne!(RequestId::generate(), id);
    }
}
