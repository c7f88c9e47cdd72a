//! Request ids: one per request, kept from the client when it is safe, echoed in the response,
//! and carried by the request's root span so every log line of the request names it
//! ([`crate::request_telemetry`] opens that span and sets the response header).

use std::fmt;

use actix_web::{
    dev::{Payload, ServiceRequest},
    http::header::{HeaderName, HeaderValue},
    Error, FromRequest, HttpMessage, HttpRequest,
};

/// Request and response header carrying the id.
pub const HEADER: &str = "x-request-id";

/// [`HEADER`] as a header name, validated once at compile time instead of per look-up.
pub static HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

/// The longest client-supplied id that is kept.
pub const MAX_LEN: usize = 64;

/// A request's id: the client's, when it passes [`RequestId::from_client`], or a fresh UUID v7.
///
/// It is stored as the header value it is sent back as: a client's id is the request header's
/// own bytes (cloning it bumps a reference count), a fresh id is formatted once, and echoing
/// either in the response copies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Keeps a client-supplied id only when it is 1–64 characters of `[A-Za-z0-9._:-]`, so it
    /// can go into a log line, a header and a LogQL query without escaping.
    pub fn from_client(value: &HeaderValue) -> Option<Self> {
        let raw = value.as_bytes();
        let valid = (1..=MAX_LEN).contains(&raw.len())
            && raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        valid.then(|| Self(value.clone()))
    }

    /// A fresh time-ordered UUID v7 (uuid's `fast-rng`: no system call per id).
    pub fn generate() -> Self {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
        Self(HeaderValue::from_str(text).expect("a UUID is a valid header value"))
    }

    /// The client's id if valid, else a fresh one. The invalid value is dropped, never logged.
    pub fn for_request(req: &ServiceRequest) -> Self {
        req.headers()
            .get(&HEADER_NAME)
            .and_then(Self::from_client)
            .unwrap_or_else(Self::generate)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Both constructors admit ASCII letters, digits and `.-_:` only.
        std::str::from_utf8(self.0.as_bytes()).expect("request ids are ASCII")
    }

    /// The id as the response header's value.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_safe_client_ids() {
        for ok in ["a", "req-1", "A.b_c:d-e", &"x".repeat(64)] {
            let value = HeaderValue::from_str(ok).unwrap();
            assert_eq!(RequestId::from_client(&value).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_unsafe_client_ids() {
        for bad in [
            "",
            "has space",
            "tab\there",
            "quote\"",
            "semi;colon",
            "ü",
            &"x".repeat(65),
        ] {
            let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(RequestId::from_client(&value).is_none(), "{bad:?} was kept");
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
