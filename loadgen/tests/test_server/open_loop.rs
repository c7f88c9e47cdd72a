//! Open-loop behaviour against in-process servers: rate accuracy, coordinated-omission
//! correction, and a target that dies mid-run.

use std::time::Duration;

use crate::server::{config, discover, eventually, spawn, Behaviour};
use loadgen::{
    report::Mode,
    run::{run_round, Load},
    scenario::Mix,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_holds_500_requests_per_second_within_5_percent() {
    let server = spawn(Behaviour::default()).await;
    let cfg = config(
        &[server.url()],
        Load::Open {
            rate: 500.0,
            max_in_flight: 64,
        },
        Duration::from_secs(2),
    );
    let endpoints = discover(&cfg).await;
    let report = run_round(&cfg, &endpoints, 1).await;

    assert_eq!(report.mode, Mode::Open);
    assert_eq!(report.total.requests, 1000);
    assert_eq!(server.requests(), 1000);
    let achieved = report.total.achieved_rate.unwrap();
    assert!(
        (475.0..=525.0).contains(&achieved),
        "achieved {achieved} req/s for 500 asked"
    );
    assert_eq!(report.total.requested_rate, Some(500.0));
    assert_eq!(report.total.errors, 0);
    assert_eq!(report.total.id_mismatches, 0);
    // The schedule spreads sends over the whole window instead of bursting them.
    assert!(report.elapsed_s >= 1.99, "elapsed {}", report.elapsed_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_stall_shows_in_the_corrected_tail_but_as_one_slow_send() {
    let server = spawn(Behaviour {
        stall: Some((50, Duration::from_millis(500))),
        ..Behaviour::default()
    })
    .await;
    let mut cfg = config(
        &[server.url()],
        Load::Open {
            rate: 100.0,
            max_in_flight: 1,
        },
        Duration::from_secs(2),
    );
    cfg.scenario.mix = "orders=1".parse::<Mix>().unwrap();
    cfg.slowest = 60;
    let endpoints = discover(&cfg).await;
    let report = run_round(&cfg, &endpoints, 1).await;

    let corrected = report.total.latency.corrected.unwrap();
    let actual = report.total.latency.actual.unwrap();
    assert!(corrected.p99_ms >= 400.0, "corrected {corrected:?}");
    assert!(actual.max_ms >= 450.0, "actual {actual:?}");
    assert!(
        actual.p99_ms < 100.0,
        "actual p99 hides the stall: {actual:?}"
    );
    let slow_sends = report
        .slowest
        .iter()
        .filter(|s| s.actual_ms.unwrap() >= 250.0)
        .count();
    assert_eq!(slow_sends, 1, "{:#?}", report.slowest);
    // Requests planned during the stall were sent late, and counted.
    assert!(report.total.late_sends >= 40, "{}", report.total.late_sends);

    let stalled = server.state.stalled_id.lock().unwrap().clone().unwrap();
    assert_eq!(report.slowest[0].request_id, stalled);
    assert!(report.slowest[0].latency_ms >= 450.0);
    // The requests queued behind it are the next slowest, with their own ids.
    let seen = server.seen();
    let position = seen.iter().position(|s| s.request_id == stalled).unwrap();
    for queued in &seen[position + 1..position + 10] {
        assert!(
            report
                .slowest
                .iter()
                .any(|s| s.request_id == queued.request_id),
            "queued request {} missing from the slowest list",
            queued.request_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_dies_mid_run_counts_errors_and_the_run_goes_on() {
    let doomed = spawn(Behaviour {
        instance: Some(("doomed".into(), "release".into())),
        ..Behaviour::default()
    })
    .await;
    let survivor = spawn(Behaviour {
        instance: Some(("survivor".into(), "release".into())),
        ..Behaviour::default()
    })
    .await;
    let cfg = config(
        &[doomed.url(), survivor.url()],
        Load::Open {
            rate: 200.0,
            max_in_flight: 16,
        },
        Duration::from_millis(1500),
    );
    let endpoints = discover(&cfg).await;
    let run = tokio::spawn(async move { run_round(&cfg, &endpoints, 1).await });
    assert!(eventually(Duration::from_secs(5), || doomed.requests() >= 30).await);
    doomed.kill();
    let report = run.await.unwrap();

    let row = |name: &str| {
        report
            .instances
            .iter()
            .find(|i| i.instance == name)
            .unwrap()
            .stats
            .clone()
    };
    let (dead, alive) = (row("doomed"), row("survivor"));
    assert_eq!(dead.requests + alive.requests, 300);
    assert!(dead.errors > 0, "{dead:?}");
    assert_eq!(
        dead.errors,
        dead.errors_by_kind.connect + dead.errors_by_kind.io + dead.errors_by_kind.timeout
    );
    assert_eq!(dead.errors_by_kind.timeout, 0, "{dead:?}");
    assert_eq!(alive.errors, 0);
    assert_eq!(alive.requests, 150);
    assert_eq!(survivor.requests(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_while_idle_are_replaced_not_counted_as_errors() {
    let server = spawn(Behaviour {
        conn_lifetime: Some(Duration::from_millis(40)),
        ..Behaviour::default()
    })
    .await;
    // 2 workers at 10 req/s: each connection idles 200 ms between its requests, long after
    // the server closed it.
    let cfg = config(
        &[server.url()],
        Load::Open {
            rate: 10.0,
            max_in_flight: 2,
        },
        Duration::from_millis(1500),
    );
    let endpoints = discover(&cfg).await;
    let report = run_round(&cfg, &endpoints, 1).await;
    assert_eq!(report.total.requests, 15);
    assert_eq!(report.total.errors, 0, "{:?}", report.total.errors_by_kind);
    assert_eq!(server.requests(), 15);
}
