//! Send: one HTTP/1.1 keep-alive connection per worker, built on hyper 1.x's low-level
//! `client::conn::http1` API.
//!
//! Why not reqwest or hyper-util's pooled client: a pool adds a lookup and a lock per request
//! and hides how many connections exist. A load generator wants the opposite — exactly N
//! connections, each owned by one worker that sends its requests back to back — which is what
//! `conn::http1` gives (the approach oha takes, and the fastest hyper client path). A worker
//! reconnects lazily after its connection fails, so a target that dies mid-run shows up as
//! `connect`/`io` errors while the run goes on.

use std::{future::Future, net::SocketAddr, pin::Pin, task::Poll, time::Duration};

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

type Driver = Pin<Box<http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>>>;

/// A connection: the request handle and the future that drives the socket.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    driver: Driver,
}

/// One worker's connection to one destination.
///
/// The connection future is polled by the worker itself, beside each request, instead of in a
/// task of its own (the usual `tokio::spawn(conn)`): one task per connection instead of two
/// saves a task wake-up and a trip through the scheduler per request, which is most of the
/// generator's own CPU per request after the kernel's TCP work. An idle keep-alive connection
/// needs no polling; a close by the server surfaces on the next request as an `io` error.
pub struct Client {
    dest: Destination,
    timeout: Duration,
    conn: Option<Conn>,
}

impl Client {
    pub fn new(dest: Destination, timeout: Duration) -> Self {
        Self {
            dest,
            timeout,
            conn: None,
        }
    }

    /// The request URI for `path` under the target's base path.
    pub fn uri(&self, path: &str) -> Option<Uri> {
        if self.dest.base_path.is_empty() {
            Uri::try_from(path).ok()
        } else {
            Uri::try_from(format!("{}{path}", self.dest.base_path)).ok()
        }
    }

    async fn connect(&self) -> Result<Conn, std::io::Error> {
        let stream = TcpStream::connect(self.dest.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        Ok(Conn {
            sender,
            driver: Box::pin(driver),
        })
    }

    /// GETs `uri` with `request_id`, reads the whole body, and classifies the result. Errors
    /// are data for the report, never a reason to stop.
    pub async fn get(&mut self, uri: Uri, request_id: &HeaderValue) -> Outcome {
        match tokio::time::timeout(self.timeout, self.get_inner(uri, request_id)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.conn = None;
                Outcome::failed(ErrorKind::Timeout)
            }
        }
    }

    async fn get_inner(&mut self, uri: Uri, request_id: &HeaderValue) -> Outcome {
        if let Some(conn) = self.conn.as_mut() {
            // Nobody polls an idle connection, so let it notice now whether the server closed
            // it meanwhile (keep-alive timeout); a closed one is replaced, not counted as an
            // error. Without a pending close this costs no system call.
            let ended =
                std::future::poll_fn(|cx| Poll::Ready(conn.driver.as_mut().poll(cx).is_ready()))
                    .await;
            if ended {
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            match self.connect().await {
                Ok(c) => self.conn = Some(c),
                Err(_) => return Outcome::failed(ErrorKind::Connect),
            }
        }
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(HOST, self.dest.host.clone());
        headers.insert(USER_AGENT, AGENT.clone());
        headers.insert(X_REQUEST_ID.clone(), request_id.clone());

        let Conn {
            mut sender,
            mut driver,
        } = self.conn.take().expect("connected above");
        let (result, driver) = {
            let exchange = exchange(&mut sender, req, request_id);
            tokio::pin!(exchange);
            let first = tokio::select! {
                biased;
                r = &mut exchange => Some(r),
                _ = driver.as_mut() => None,
            };
            match first {
                Some(r) => (r, Some(driver)),
                None => {
                    // The connection ended. Dropping it settles the request's response
                    // channel: the exchange then completes with what arrived, or fails.
                    drop(driver);
                    (exchange.await, None)
                }
            }
        };
        if let (Ok(_), Some(driver)) = (&result, driver) {
            self.conn = Some(Conn { sender, driver });
        }
        match result {
            Ok((status, id_echoed)) => Outcome {
                status: Some(status),
                error: match status {
                    400..=499 => Some(ErrorKind::Http4xx),
                    500..=599 => Some(ErrorKind::Http5xx),
                    _ => None,
                },
                id_echoed,
            },
            Err(()) => Outcome::failed(ErrorKind::Io),
        }
    }

    /// One GET whose body the caller wants (used for `/healthz` before the run).
    pub async fn fetch(&mut self, path: &str) -> Result<(u16, Bytes), String> {
        let fut = async {
            let Conn { mut sender, driver } = self.connect().await.map_err(|e| e.to_string())?;
            tokio::spawn(driver);
            let mut req = Request::new(Empty::<Bytes>::new());
            *req.uri_mut() = self.uri(path).ok_or("invalid path")?;
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

/// Sends one request on a ready connection and drains the response body.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
    request_id: &HeaderValue,
) -> Result<(u16, bool), ()> {
    sender.ready().await.map_err(drop)?;
    let response = sender.send_request(req).await.map_err(drop)?;
    let status = response.status().as_u16();
    let id_echoed = response.headers().get(&X_REQUEST_ID) == Some(request_id);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame.map_err(drop)?;
    }
    Ok((status, id_echoed))
}
