//! A tiny hyper server on port 0 whose behaviour each test chooses, and helpers to drive
//! loadgen against it. No fixed ports, no sleeps as synchronisation.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use loadgen::{
    run::Load,
    target::{Endpoint, Target},
    RunConfig,
};
use tokio::{
    net::TcpListener,
    task::{JoinHandle, JoinSet},
    time::Instant,
};

/// What the test server does.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// `/healthz` answers `{"status":"ok","instance":…,"flavor":…}`; `None`: 404.
    pub instance: Option<(String, String)>,
    /// The n-th (1-based) non-healthz request is held this long before it is answered.
    pub stall: Option<(u64, Duration)>,
    /// Every request is held this long.
    pub delay: Option<Duration>,
    /// Do not echo `x-request-id`.
    pub no_echo: bool,
    /// Close every connection this long after accepting it (an idle keep-alive timeout).
    pub conn_lifetime: Option<Duration>,
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub host: String,
    pub request_id: String,
}

#[derive(Debug, Default)]
pub struct State {
    pub requests: AtomicU64,
    pub seen: Mutex<Vec<Seen>>,
    pub stalled_id: Mutex<Option<String>>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: JoinHandle<()>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Stops accepting and closes every open connection, as a crashed process would.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn spawn(behaviour: Behaviour) -> TestServer {
    spawn_on("127.0.0.1".parse().unwrap(), 0, behaviour)
        .await
        .expect("bind 127.0.0.1:0")
}

pub async fn spawn_on(ip: IpAddr, port: u16, behaviour: Behaviour) -> std::io::Result<TestServer> {
    let listener = TcpListener::bind((ip, port)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State::default());
    let behaviour = Arc::new(behaviour);
    let st = state.clone();
    let task = tokio::spawn(async move {
        // Dropping this set (when the task is aborted) aborts every connection.
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (st, b) = (st.clone(), behaviour.clone());
            conns.spawn(async move {
                let lifetime = b.conn_lifetime;
                let svc = service_fn(move |req| handle(st.clone(), b.clone(), req));
                let serve = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                match lifetime {
                    Some(l) => drop(tokio::time::timeout(l, serve).await),
                    None => drop(serve.await),
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    Ok(TestServer { addr, state, task })
}

async fn handle(
    st: Arc<State>,
    b: Arc<Behaviour>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if path.starts_with("/debug/blocked") {
        // Not the lab's service: no block record (loadgen names the instance and goes on).
        let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"error\":\"not found\"}")));
        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
        return Ok(resp);
    }
    if path == "/healthz" {
        let mut resp = Response::new(Full::new(Bytes::new()));
        match &b.instance {
            Some((instance, flavor)) => {
                *resp.body_mut() = Full::new(Bytes::from(
                    serde_json::json!({"status": "ok", "version": "0.1.0", "flavor": flavor, "instance": instance})
                        .to_string(),
                ));
            }
            None => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
        }
        return Ok(resp);
    }
    let id = req.headers().get("x-request-id").cloned();
    let seen = Seen {
        path: path.clone(),
        host: req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        request_id: id
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    };
    st.seen.lock().unwrap().push(seen.clone());
    let n = st.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some((at, hold)) = b.stall {
        if n == at {
            *st.stalled_id.lock().unwrap() = Some(seen.request_id.clone());
            tokio::time::sleep(hold).await;
        }
    }
    if let Some(d) = b.delay {
        tokio::time::sleep(d).await;
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    if path.starts_with("/lock/std") {
        *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
    }
    if let (Some(id), false) = (id, b.no_echo) {
        resp.headers_mut().insert("x-request-id", id);
    }
    Ok(resp)
}

/// A run configuration against `urls`.
pub fn config(urls: &[String], load: Load, duration: Duration) -> RunConfig {
    let targets: Vec<Target> = urls.iter().map(|u| u.parse().unwrap()).collect();
    RunConfig::new(targets, load, duration)
}

pub async fn discover(cfg: &RunConfig) -> Vec<Endpoint> {
    loadgen::target::discover(&cfg.targets, &cfg.resolve, cfg.timeout, cfg.wait)
        .await
        .expect("targets reachable")
}

/// Polls `cond` until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}
