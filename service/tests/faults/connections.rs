//! Ten thousand connections held open on loopback at once, each with a victim request in
//! flight: every one of them is answered 200, and the service's memory stays bounded (printed;
//! run with `--nocapture` to see it).
//!
//! The connections are held by a long simulated dependency (`DEPENDENCY_MS`), not by idling:
//! actix-web closes a keep-alive connection idle for 5 s, and keeping 10 000 idle connections
//! alive with periodic requests is a load test of its own (on a busy 2-CPU machine it overloads
//! a debug build until keep-alive timers fire before queued requests are read).
//!
//! Both this process and the service need more than 10 000 file descriptors: the test raises
//! its soft limit up to the hard limit (the service inherits it), and fails with a clear
//! message if even the hard limit is too low.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use test_support::proc_status_kib;

use crate::{
    process::{nofile_soft_limit, open_fds, Service},
    rawhttp::Conn,
};

const CONNECTIONS: usize = 10_000;
/// How long each victim request waits on its dependency: longer than opening all connections.
const HOLD: Duration = Duration::from_secs(8);
/// Connections being opened at once (the listener's accept backlog is small).
const OPENING_AT_ONCE: usize = 200;
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_held_connections_get_no_errors_and_bounded_memory() {
    // Best effort: where the hard limit is lower, the assertion below says so.
    let _ = rlimit::increase_nofile_limit(65_536);
    let limit = nofile_soft_limit();
    assert!(
        limit >= CONNECTIONS as u64 + 1_000,
        "open-file limit {limit} is too low for {CONNECTIONS} connections: raise the hard limit (`ulimit -Hn`)"
    );
    let hold_ms = HOLD.as_millis().to_string();
    let service = Service::start(&[("WORKERS", "2"), ("DEPENDENCY_MS", &hold_ms)]);
    let (addr, pid) = (service.addr, service.pid());
    let mut warm = Conn::connect(addr).await.unwrap();
    assert_eq!(warm.get("/healthz").await.unwrap(), 200);
    drop(warm);
    let idle_kib = proc_status_kib(pid, "VmRSS");

    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
    let sent = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let (opening, sent, errors) =
            (Arc::clone(&opening), Arc::clone(&sent), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let permit = opening.acquire_owned().await.unwrap();
            let result = async {
                let mut conn = Conn::connect(addr).await?;
                let path = format!("/api/orders/{i}");
                conn.send_get(&path).await?;
                sent.fetch_add(1, Ordering::Relaxed);
                drop(permit);
                match conn.read_response().await? {
                    200 => Ok(conn),
                    status => Err(std::io::Error::other(format!("status {status}"))),
                }
            }
            .await;
            result.map_err(|e| {
                let error = format!("connection {i} after {:?}: {e}", start.elapsed());
                errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(error);
            })
        }));
    }

    // All requests sent: the service holds every connection, each with a request in flight.
    while sent.load(Ordering::Relaxed) < CONNECTIONS {
        if let Some(first) = errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first()
        {
            panic!("error while opening: {first}");
        }
        assert!(
            start.elapsed() < DEADLINE,
            "only {} of {CONNECTIONS} requests sent within {DEADLINE:?}",
            sent.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp = start.elapsed();
    // Wait until the service has accepted them all (or the first answers come back).
    while open_fds(pid) < CONNECTIONS && start.elapsed() < HOLD {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fds = open_fds(pid);
    let held_kib = proc_status_kib(pid, "VmRSS");
    assert!(
        ramp < HOLD,
        "opening took {ramp:?}, longer than the {HOLD:?} hold: connections were not all held at once"
    );
    assert!(
        fds >= CONNECTIONS,
        "the service held only {fds} descriptors"
    );

    let mut answered = 0;
    for task in tasks {
        answered += usize::from(task.await.unwrap().is_ok());
    }
    let errors = errors.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(
        errors.is_empty(),
        "{} errors, first: {}",
        errors.len(),
        errors[0]
    );
    assert_eq!(answered, CONNECTIONS);

    let per_connection = held_kib.saturating_sub(idle_kib) * 1024 / CONNECTIONS as u64;
    eprintln!(
        "service RSS: idle {idle_kib} KiB, {CONNECTIONS} connections held {held_kib} KiB \
         ({per_connection} B per connection; {fds} fds; opened in {ramp:?})"
    );
    // Bounded: a generous budget per connection over idle. Each connection is a tokio task,
    // and the canary's console layer keeps state per task (26–70 KiB per connection measured
    // in debug builds; see also `docs/benchmarks.md` § Memory), so its budget is larger.
    let budget_kib: u64 = if cfg!(feature = "console") { 256 } else { 64 };
    assert!(
        held_kib < idle_kib + budget_kib * CONNECTIONS as u64,
        "RSS {held_kib} KiB with {CONNECTIONS} connections (idle {idle_kib} KiB, budget \
         {budget_kib} KiB per connection)"
    );
}
