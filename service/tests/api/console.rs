//! The canary's tokio-console endpoint, checked with the real console protocol, and the
//! release build's proof that it has none.

use std::{net::TcpStream, process::Command};

use test_support::free_port;

use crate::helpers::spawn_app;

/// Lines of `cargo tree` for the service's normal dependencies with the given features.
fn dependency_names(features: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "tree",
        "--offline",
        "-p",
        "service",
        "-e",
        "normal",
        "--prefix",
        "none",
        "-f",
        "{p}",
    ]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let output = cmd.output().expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_default_dependency_graph_has_no_console_subscriber() {
    let has_console = |names: &[String]| names.iter().any(|n| n.starts_with("console-subscriber "));
    assert!(
        !has_console(&dependency_names(&[])),
        "console-subscriber is in the default build"
    );
    // The same query does see it when the feature is on, so the check above can fail.
    assert!(has_console(&dependency_names(&["console"])));
}

#[tokio::test]
async fn the_console_port_is_open_only_in_canary_builds() {
    let port = free_port();
    let app = spawn_app(&[("TOKIO_CONSOLE_BIND", &format!("127.0.0.1:{port}"))]).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let listening = app
        .wait_for_line(|l| l.message() == Some("listening"))
        .await
        .json
        .unwrap();
    let open = TcpStream::connect(("127.0.0.1", port)).is_ok();
    if cfg!(feature = "console") {
        assert!(open, "the canary does not listen on its console port");
        assert_eq!(
            listening["fields"]["console_addr"],
            format!("127.0.0.1:{port}")
        );
        assert_eq!(listening["fields"]["flavor"], "canary");
    } else {
        assert!(!open, "a release build listens on the console port");
        assert!(listening["fields"].get("console_addr").is_none());
        assert_eq!(listening["fields"]["flavor"], "release");
    }
}

#[cfg(feature = "console")]
#[test]
fn bad_console_settings_exit_2_with_one_line_naming_the_variable() {
    for (key, value) in [
        ("TOKIO_CONSOLE_BIND", "localhost"),
        ("TOKIO_CONSOLE_RETENTION", "60"),
        ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "soon"),
        ("TOKIO_CONSOLE_BUFFER_CAPACITY", "-1"),
        ("TOKIO_CONSOLE_RESOURCES", "yes"),
    ] {
        let stderr = crate::helpers::refused_start(
            &[("LISTEN_ADDR", "127.0.0.1:0"), (key, value)],
            &format!("{key}={value}"),
        )
        .stderr;
        assert!(stderr.contains(key), "{key}={value}: {stderr}");
    }
}

#[cfg(feature = "console")]
mod grpc {
    //! A tokio-console client in miniature: subscribe to `Instrument::watch_updates`, keep
    //! the task table across incremental updates, and compute busy and idle the way the
    //! tokio-console CLI does (a task mid-poll adds `now - last_poll_started` to its busy time).

    use std::{
        collections::HashMap,
        time::{Duration, Instant, SystemTime},
    };

    use console_api::{
        field,
        instrument::instrument_client::InstrumentClient,
        instrument::{InstrumentRequest, TaskDetailsRequest},
        tasks::{task_details::PollTimesHistogram, DurationHistogram, Stats, Task},
        Id,
    };
    use service::console::{DEFAULT_RETENTION, POLL_HISTOGRAM_MAX, SCHEDULED_HISTOGRAM_MAX};
    use tonic::transport::Channel;

    use test_support::{free_port, DEADLINE};

    use crate::helpers::{raw_get, raw_request, spawn_app};

    const SLOW_DISK: Duration = Duration::from_millis(1000);

    #[derive(Debug)]
    struct Row {
        id: u64,
        location: String,
        kind: String,
        polls: u64,
        busy: Duration,
        idle: Duration,
    }

    fn to_time(ts: Option<prost_types::Timestamp>) -> Option<SystemTime> {
        ts.and_then(|t| SystemTime::try_from(t).ok())
    }

    fn to_duration(d: Option<prost_types::Duration>) -> Duration {
        d.and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default()
    }

    fn row(task: &Task, stats: &Stats, now: SystemTime) -> Row {
        let location = task
            .location
            .as_ref()
            .map_or(String::new(), |l| format!("{}:{}", l.file(), l.line()));
        let kind = task
            .fields
            .iter()
            .find(|f| matches!(&f.name, Some(field::Name::StrName(n)) if n == "kind"))
            .and_then(|f| match &f.value {
                Some(field::Value::DebugVal(v)) | Some(field::Value::StrVal(v)) => Some(v.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let poll = stats.poll_stats.unwrap_or_default();
        let mut busy = to_duration(poll.busy_time);
        let started = to_time(poll.last_poll_started);
        let ended = to_time(poll.last_poll_ended);
        if let Some(started) = started {
            if ended.is_none_or(|ended| started > ended) {
                busy += now.duration_since(started).unwrap_or_default();
            }
        }
        let end = to_time(stats.dropped_at).unwrap_or(now);
        let total = to_time(stats.created_at)
            .and_then(|c| end.duration_since(c).ok())
            .unwrap_or_default();
        let idle = total
            .saturating_sub(busy)
            .saturating_sub(to_duration(stats.scheduled_time));
        Row {
            id: task.id.as_ref().map_or(0, |i| i.id),
            location,
            kind,
            polls: poll.polls,
            busy,
            idle,
        }
    }

    /// A client of the console at `port`, retried until it answers.
    async fn connect(port: u16) -> InstrumentClient<Channel> {
        let start = Instant::now();
        loop {
            match InstrumentClient::connect(format!("http://127.0.0.1:{port}")).await {
                Ok(client) => return client,
                Err(err) if start.elapsed() > DEADLINE => {
                    panic!("console endpoint unreachable: {err}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The console's stream of updates, the first of them a snapshot of everything it knows.
    async fn watch_updates(
        client: &mut InstrumentClient<Channel>,
    ) -> tonic::Streaming<console_api::instrument::Update> {
        client
            .watch_updates(InstrumentRequest {})
            .await
            .expect("watch_updates")
            .into_inner()
    }

    /// The highest value a serialized HdrHistogram (V2 format, uncompressed) can record: the
    /// bound it was created with. Header: cookie, payload length, normalizing offset,
    /// significant digits (4 bytes each), lowest and highest trackable value (8 bytes each).
    fn highest_trackable(histogram: Option<&DurationHistogram>) -> Duration {
        let raw = &histogram.expect("a histogram").raw_histogram;
        assert!(raw.len() >= 32, "histogram of {} bytes", raw.len());
        assert_eq!(
            raw[..4],
            0x1c84_9313_u32.to_be_bytes(),
            "not an HdrHistogram V2"
        );
        Duration::from_nanos(u64::from_be_bytes(raw[24..32].try_into().unwrap()))
    }

    #[tokio::test]
    async fn without_console_settings_finished_tasks_are_kept_for_the_labs_retention_and_histograms_are_bounded(
    ) {
        // Only the address is set (each test needs its own port): retention, histogram bounds
        // and publish interval are the binary's defaults.
        let console_port = free_port();
        let app = spawn_app(&[("TOKIO_CONSOLE_BIND", &format!("127.0.0.1:{console_port}"))]).await;
        let mut client = connect(console_port).await;
        let mut updates = watch_updates(&mut client).await;
        let addr = app.addr;
        tokio::task::spawn_blocking(move || raw_request(addr, &raw_get("/api/orders/1", "")))
            .await
            .unwrap();

        // The connection's task, once the console has seen it end.
        let mut tasks: HashMap<u64, Task> = HashMap::new();
        let start = Instant::now();
        let (id, dropped_seen) = 'found: loop {
            assert!(start.elapsed() < DEADLINE, "no finished connection task");
            let update = updates
                .message()
                .await
                .expect("update stream")
                .expect("stream ended");
            let Some(task_update) = update.task_update else {
                continue;
            };
            for task in task_update.new_tasks {
                tasks.insert(task.id.as_ref().map_or(0, |i| i.id), task);
            }
            for (id, stats) in task_update.stats_update {
                let connection = tasks
                    .get(&id)
                    .and_then(|t| t.location.as_ref())
                    .is_some_and(|l| {
                        l.file().contains("actix-server") && l.file().ends_with("service.rs")
                    });
                if connection && stats.dropped_at.is_some() {
                    break 'found (id, Instant::now());
                }
            }
        };
        drop(updates);

        let details = |client: &mut InstrumentClient<Channel>| {
            let request = TaskDetailsRequest {
                id: Some(Id { id }),
            };
            let mut client = client.clone();
            async move { client.watch_task_details(request).await }
        };
        let mut stream = details(&mut client)
            .await
            .expect("details of a finished task")
            .into_inner();
        let first = stream
            .message()
            .await
            .expect("details")
            .expect("details stream ended");
        let poll = match first.poll_times_histogram {
            Some(PollTimesHistogram::Histogram(h)) => Some(h),
            other => panic!("poll histogram: {other:?}"),
        };
        assert_eq!(highest_trackable(poll.as_ref()), POLL_HISTOGRAM_MAX);
        assert_eq!(
            highest_trackable(first.scheduled_times_histogram.as_ref()),
            SCHEDULED_HISTOGRAM_MAX
        );
        drop(stream);

        // Kept while the retention lasts, then gone: "task not found".
        let gone_after = loop {
            let kept_for = dropped_seen.elapsed();
            assert!(
                kept_for < DEFAULT_RETENTION * 3,
                "the finished task is still kept after {kept_for:?}"
            );
            match details(&mut client).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(status) if status.code() == tonic::Code::NotFound => break kept_for,
                Err(status) => panic!("task details: {status}"),
            }
        };
        assert!(
            gone_after >= DEFAULT_RETENTION / 2,
            "the finished task was dropped after {gone_after:?}"
        );
        assert!(DEFAULT_RETENTION <= Duration::from_secs(60));
    }

    #[tokio::test]
    async fn tokio_console_shows_the_blocking_task_busy_and_the_victims_idle() {
        let console_port = free_port();
        let app = spawn_app(&[
            ("TOKIO_CONSOLE_BIND", &format!("127.0.0.1:{console_port}")),
            ("TOKIO_CONSOLE_PUBLISH_INTERVAL", "200ms"),
            ("SLOW_DISK_MS", &SLOW_DISK.as_millis().to_string()),
            ("DEPENDENCY_MS", "20"),
        ])
        .await;
        let mut client = connect(console_port).await;
        let mut updates = watch_updates(&mut client).await;

        // One blocking request, then a few victims, each on its own connection (one task each).
        let addr = app.addr;
        let traffic = tokio::task::spawn_blocking(move || {
            let (status, _) = raw_request(addr, &raw_get("/config/sync/app.toml", ""));
            assert_eq!(status, 200);
            for i in 0..5 {
                let (status, _) = raw_request(addr, &raw_get(&format!("/api/orders/{i}"), ""));
                assert_eq!(status, 200);
            }
        });

        let mut tasks: HashMap<u64, Task> = HashMap::new();
        let mut stats: HashMap<u64, Stats> = HashMap::new();
        let mut now = SystemTime::now();
        let mut traffic = Some(traffic);
        let mut read_until = Instant::now() + DEADLINE;
        while Instant::now() < read_until {
            let next = tokio::time::timeout(Duration::from_millis(300), updates.message()).await;
            if let Ok(message) = next {
                let update = message
                    .expect("update stream failed")
                    .expect("update stream ended");
                now = to_time(update.now).unwrap_or(now);
                if let Some(task_update) = update.task_update {
                    for task in task_update.new_tasks {
                        tasks.insert(task.id.as_ref().map_or(0, |i| i.id), task);
                    }
                    stats.extend(task_update.stats_update);
                }
            }
            if traffic.as_ref().is_some_and(|t| t.is_finished()) {
                traffic.take().unwrap().await.unwrap();
                // A few more publish intervals so the last polls and drops are reported.
                read_until = Instant::now() + Duration::from_secs(1);
            }
        }
        assert!(traffic.is_none(), "the requests did not finish in time");

        let mut rows: Vec<Row> = tasks
            .values()
            .filter_map(|t| stats.get(&t.id.as_ref()?.id).map(|s| row(t, s, now)))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.busy));
        eprintln!(
            "{:>6} {:>10} {:>10} {:>6} {:<6} location",
            "id", "busy", "idle", "polls", "kind"
        );
        for r in &rows {
            eprintln!(
                "{:>6} {:>10.3?} {:>10.3?} {:>6} {:<6} {}",
                r.id, r.busy, r.idle, r.polls, r.kind, r.location
            );
        }
        let connections: Vec<&Row> = rows
            .iter()
            .filter(|r| r.location.contains("actix-server") && r.location.contains("service.rs"))
            .collect();
        assert!(
            connections.len() >= 6,
            "expected a task per connection, saw {}",
            connections.len()
        );
        let blocker = connections[0];
        assert!(
            blocker.busy >= SLOW_DISK.mul_f64(0.9),
            "blocking task busy only {:?}",
            blocker.busy
        );
        assert!(
            blocker.busy >= blocker.idle * 100,
            "blocking task busy {:?} vs idle {:?}",
            blocker.busy,
            blocker.idle
        );
        let victims = &connections[1..];
        let mostly_idle = victims.iter().filter(|r| r.idle > r.busy).count();
        assert!(
            mostly_idle * 10 >= victims.len() * 8,
            "victim tasks are not mostly idle"
        );
    }
}
