//! Request ids: one per request, kept from the client when it is safe, echoed in the response,
//! and carried by the request's root span so every log line of the request names it
//! ([`crate::request_telemetry`] opens that span and sets the response header).

use std::{
    cell::Cell,
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use actix_web::{
    dev::{Payload, ServiceRequest},
    http::header::{HeaderName, HeaderValue},
    Error, FromRequest, HttpRequest,
};
use arrayvec::ArrayString;

/// Request and response header carrying the id.
pub const HEADER: &str = "x-request-id";

/// [`HEADER`] as a header name, validated once at compile time instead of per look-up.
pub static HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

/// The longest client-supplied id that is kept.
pub const MAX_LEN: usize = 64;

/// A request's id: the client's, when it passes [`RequestId::from_client`], or a fresh UUID v7.
///
/// Kept inline as text (at most [`MAX_LEN`] bytes): making, copying and reading an id allocates
/// nothing and checks nothing again; the response header's value is made from it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestId(ArrayString<MAX_LEN>);

impl RequestId {
    /// Keeps a client-supplied id only when it is 1–64 characters of `[A-Za-z0-9._:-]`, so it
    /// can go into a log line, a header and a LogQL query without escaping.
    pub fn from_client(value: &HeaderValue) -> Option<Self> {
        let raw = value.as_bytes();
        let valid = (1..=MAX_LEN).contains(&raw.len())
            && raw
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !valid {
            return None;
        }
        let text = std::str::from_utf8(raw).ok()?;
        ArrayString::from(text).ok().map(Self)
    }

    /// A fresh UUID v7: the Unix time in milliseconds, then 74 random bits from the thread's
    /// CSPRNG (rand's, which uuid's `fast-rng` uses too). Ids sort by their millisecond; within
    /// one they are only unique, not ordered: `Uuid::now_v7`'s shared counter, which orders
    /// them, costs more than the rest of the id (`docs/benchmarks.md`). With its response
    /// header value.
    pub fn generate() -> (Self, HeaderValue) {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let millis = since_epoch.as_secs() * 1000 + u64::from(since_epoch.subsec_millis());
        // One draw for all ten bytes (an array would draw each byte).
        let random = rand::random::<u128>().to_le_bytes();
        let random = random[..10].try_into().expect("ten of sixteen bytes");
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, random).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid.hyphenated().encode_lower(&mut text);
        // Checked here, where its length is known, rather than as an id of any length later.
        let header = HeaderValue::from_str(text).expect("a UUID is a valid header value");
        let id = ArrayString::from(text).expect("a UUID fits in MAX_LEN");
        (Self(id), header)
    }

    /// The client's id if valid, else a fresh one, with the value of the response header that
    /// echoes it (the client's own header, shared). The invalid value is dropped, never logged.
    pub fn for_request(req: &ServiceRequest) -> (Self, HeaderValue) {
        if let Some(client) = req.headers().get(&HEADER_NAME) {
            if let Some(id) = Self::from_client(client) {
                return (id, client.clone());
            }
        }
        Self::generate()
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

thread_local! {
    /// The id of the request being polled on this thread (see [`RequestId::enter`]).
    static CURRENT: Cell<Option<RequestId>> = const { Cell::new(None) };
}

impl RequestId {
    /// Makes this the id of the request being polled on this thread until the guard drops, for
    /// the extractor; the request middleware enters it around each poll of the request. A
    /// thread-local rather than the request's extensions: no allocation and no map insert per
    /// request, the id copied in for the poll (`docs/benchmarks.md`).
    pub fn enter(&self) -> Entered {
        Entered(CURRENT.replace(Some(*self)))
    }
}

/// Restores the id that was current before [`RequestId::enter`] when dropped.
#[must_use = "the id stops being current when the guard drops"]
#[derive(Debug)]
pub struct Entered(Option<RequestId>);

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(self.0.take());
    }
}

/// Handlers take the id as an extractor to put it on their own spans. Extractors run inside the
/// handler's future, so inside the middleware's poll of the request.
impl FromRequest for RequestId {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(_: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = CURRENT.get();
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
        let (id, header) = RequestId::generate();
        assert_eq!(header, id.as_str());
        let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_ne!(RequestId::generate().0, id);
    }

    #[test]
    fn the_extractor_finds_the_entered_id_and_only_while_entered() {
        let extract = || {
            let req = actix_web::test::TestRequest::default().to_http_request();
            RequestId::extract(&req).into_inner().ok()
        };
        let outer = RequestId::generate().0;
        let inner = RequestId::generate().0;
        assert_eq!(extract(), None);
        {
            let _outer = outer.enter();
            assert_eq!(extract(), Some(outer));
            {
                let _inner = inner.enter();
                assert_eq!(extract(), Some(inner));
            }
            assert_eq!(extract(), Some(outer));
        }
        assert_eq!(extract(), None);
    }
}
