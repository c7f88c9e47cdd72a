//! Send: one HTTP/1.1 keep-alive connection per worker, built on hyper 1.x's low-level
//! `client::conn::http1` API.
//!
//! Why not reqwest or hyper-util's pooled client: a pool adds a lookup and a lock per request
//! and hides how many connections exist. A load generator wants the opposite — exactly N
//! connections, each owned by one worker that sends its requests back to back — which is what
//! `conn::http1` gives (the approach oha takes, and the fastest hyper client path). A worker
//! reconnects lazily after its connection fails, so a target that dies mid-run shows up as
//! `connect`/`io` errors while the run goes on.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{
    client::conn::http1::{self, SendRequest},
    header::{HeaderName, HeaderValue, HOST, USER_AGENT},
    Request, Uri,
};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

/// The request-id header the service reads and echoes.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

static AGENT: HeaderValue =
    HeaderValue::from_static(concat!("loadgen/", env!("CARGO_PKG_VERSION")));

/// Why a request failed. HTTP status classes count as errors only for 4xx and 5xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect or HTTP handshake failed.
    Connect,
    /// No complete response within `--timeout`.
    Timeout,
    /// The connection broke mid-request (reset, closed, malformed response).
    Io,
    /// The response status was 4xx.
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// The response status was 5xx.
    #[serde(rename = "http_5xx")]
    Http5xx,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Io,
        ErrorKind::Http4xx,
        ErrorKind::Http5xx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Http4xx => "http_4xx",
            ErrorKind::Http5xx => "http_5xx",
        }
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The response status, when a response arrived.
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    /// The response echoed our `x-request-id` unchanged.
    pub id_echoed: bool,
}

impl Outcome {
    fn failed(kind: ErrorKind) -> Self {
        Self {
            status: None,
            error: Some(kind),
            id_echoed: false,
        }
    }
}

/// Where to send: one address, with the `Host` header of the name it was resolved from.
#[derive(Debug, Clone)]
pub struct Destination {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    /// Path prefix of the target URL, without a trailing slash (usually empty).
    pub base_path: String,
}

/// One worker's connection to one destination.
pub struct Client {
    dest: Destination,
    timeout: Duration,
    conn: Option<SendRequest<Empty<Bytes>>>,
}

impl Client {
    pub fn new(dest: Destination, timeout: Duration) -> Self {
        Self {
            dest,
            timeout,
            conn: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, std::io::Error> {
        let stream = TcpStream::connect(self.dest.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            // Ends when the server or the worker closes the connection; errors surface to
            // the worker through `send_request`.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// GETs `path` (relative to the target's base path) with `request_id`, reads the whole
    /// body, and classifies the result. Never panics and never returns early without an
    /// outcome: errors are data for the report.
    pub async fn get(&mut self, path: &str, request_id: &HeaderValue) -> Outcome {
        match tokio::time::timeout(self.timeout, self.get_inner(path, request_id)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.conn = None;
                Outcome::failed(ErrorKind::Timeout)
            }
        }
    }

    async fn get_inner(&mut self, path: &str, request_id: &HeaderValue) -> Outcome {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            match self.connect().await {
                Ok(c) => self.conn = Some(c),
                Err(_) => {
                    self.conn = None;
                    return Outcome::failed(ErrorKind::Connect);
                }
            }
        }
        let sender = self.conn.as_mut().expect("connected above");
        if sender.ready().await.is_err() {
            self.conn = None;
            return Outcome::failed(ErrorKind::Io);
        }
        let uri = if self.dest.base_path.is_empty() {
            Uri::try_from(path)
        } else {
            Uri::try_from(format!("{}{path}", self.dest.base_path))
        };
        let Ok(uri) = uri else {
            return Outcome::failed(ErrorKind::Io);
        };
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(HOST, self.dest.host.clone());
        headers.insert(USER_AGENT, AGENT.clone());
        headers.insert(X_REQUEST_ID.clone(), request_id.clone());
        let response = match sender.send_request(req).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                return Outcome::failed(ErrorKind::Io);
            }
        };
        let status = response.status().as_u16();
        let id_echoed = response.headers().get(&X_REQUEST_ID) == Some(request_id);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                self.conn = None;
                return Outcome::failed(ErrorKind::Io);
            }
        }
        let error = match status {
            400..=499 => Some(ErrorKind::Http4xx),
            500..=599 => Some(ErrorKind::Http5xx),
            _ => None,
        };
        Outcome {
            status: Some(status),
            error,
            id_echoed,
        }
    }

    /// One GET whose body the caller wants (used for `/healthz` before the run).
    pub async fn fetch(&mut self, path: &str) -> Result<(u16, Bytes), String> {
        let fut = async {
            let mut sender = self.connect().await.map_err(|e| e.to_string())?;
            let mut req = Request::new(Empty::<Bytes>::new());
            *req.uri_mut() = Uri::try_from(format!("{}{path}", self.dest.base_path))
                .map_err(|e| e.to_string())?;
            req.headers_mut().insert(HOST, self.dest.host.clone());
            req.headers_mut().insert(USER_AGENT, AGENT.clone());
            let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
    }
}
