//! The lab's core claim: with one worker, a handler that blocks it stalls the victim; its fix
//! does not. Timing assertions are generous ratios of the 300 ms block, never tight numbers.

use std::time::{Duration, Instant};

use test_support::fresh_id;

use crate::helpers::{spawn_app, TestApp};

const STALLED: Duration = Duration::from_millis(250);
const HEALTHY: Duration = Duration::from_millis(100);

/// Starts `path` (under a fresh id), waits until its handler logged `started`, then times one
/// victim request. Returns the victim's latency and the blocker's status.
async fn victim_latency_during(app: &TestApp, path: &str, started: &str) -> (Duration, u16) {
    let id = fresh_id("blocker");
    let blocker = {
        let request = app
            .client
            .get(app.url(path))
            .header("x-request-id", &id)
            .send();
        tokio::spawn(request)
    };
    app.wait_for_event(&id, started).await;
    let sent = Instant::now();
    let victim = app.get("/api/orders/1").await;
    let latency = sent.elapsed();
    assert_eq!(victim.status(), 200);
    let status = blocker.await.unwrap().unwrap().status().as_u16();
    (latency, status)
}

#[tokio::test]
async fn std_fs_in_a_handler_stalls_the_victim_and_tokio_fs_does_not() {
    let app = spawn_app(&[]).await;
    let (stalled, status) =
        victim_latency_during(&app, "/config/sync/app.toml", "loading config").await;
    assert_eq!(status, 200);
    assert!(
        stalled >= STALLED,
        "victim took {stalled:?} during /config/sync"
    );
    let (healthy, status) =
        victim_latency_during(&app, "/config/async/app.toml", "loading config").await;
    assert_eq!(status, 200);
    assert!(
        healthy < HEALTHY,
        "victim took {healthy:?} during /config/async"
    );
}

#[tokio::test]
async fn cpu_work_inline_stalls_the_victim_and_offloaded_does_not() {
    let app = spawn_app(&[]).await;
    let (stalled, _) = victim_latency_during(&app, "/cpu/inline?ms=300", "burning cpu").await;
    assert!(
        stalled >= STALLED,
        "victim took {stalled:?} during /cpu/inline"
    );
    let (healthy, _) = victim_latency_during(&app, "/cpu/offload?ms=300", "burning cpu").await;
    assert!(
        healthy < HEALTHY,
        "victim took {healthy:?} during /cpu/offload"
    );
}

/// A holder takes the lock and parks across an await; a second request then waits for it. The
/// std waiter blocks the only worker (bounded: it gives up with 503), the tokio waiter yields.
async fn victim_latency_during_lock_contention(app: &TestApp, path: &str) -> (Duration, u16) {
    let holder_id = fresh_id("holder");
    let holder = tokio::spawn(
        app.client
            .get(app.url(path))
            .header("x-request-id", &holder_id)
            .send(),
    );
    app.wait_for_event(&holder_id, "lock acquired").await;
    let (latency, waiter_status) = victim_latency_during(app, path, "waiting for lock").await;
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);
    (latency, waiter_status)
}

#[tokio::test]
async fn a_std_mutex_held_across_await_stalls_the_victim_and_a_tokio_mutex_does_not() {
    let app = spawn_app(&[]).await;
    let (stalled, waiter) = victim_latency_during_lock_contention(&app, "/lock/std").await;
    assert!(
        stalled >= STALLED,
        "victim took {stalled:?} during /lock/std contention"
    );
    assert_eq!(
        waiter, 503,
        "the std waiter should give up: its holder is parked on the same worker"
    );
    let (healthy, waiter) = victim_latency_during_lock_contention(&app, "/lock/tokio").await;
    assert!(
        healthy < HEALTHY,
        "victim took {healthy:?} during /lock/tokio contention"
    );
    assert_eq!(waiter, 200);
}

#[tokio::test]
async fn the_service_survives_std_lock_contention_and_keeps_serving() {
    let app = spawn_app(&[("SLOW_DISK_MS", "50")]).await;
    let requests: Vec<_> = (0..4)
        .map(|_| tokio::spawn(app.client.get(app.url("/lock/std")).send()))
        .collect();
    for request in requests {
        let status = request.await.unwrap().unwrap().status().as_u16();
        assert!(status == 200 || status == 503, "{status}");
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
}
