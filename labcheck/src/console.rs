//! A real tokio-console client call against the canary: `Instrument/WatchUpdates` through
//! console-api's generated tonic client, read until the updates show a tokio task span
//! (`runtime.spawn`). Such spans exist only when the service was built with
//! `--cfg tokio_unstable`, so success proves both that the console answers and that the flag
//! reached the build.
//!
//! With `--short-locations` it also checks every task, resource and callsite location inside
//! the cargo registry: each must be one tokio-console shortens to `<cargo>/crate-x.y.z/src/…`
//! (as it does for a local build), with actix-server's tasks among them — proof that the
//! canary image's path remap is in effect.

use std::{collections::BTreeSet, sync::LazyLock, time::Duration};

use console_api::instrument::{instrument_client::InstrumentClient, InstrumentRequest, Update};
use regex::Regex;
use tokio::time::{timeout_at, Instant};
use tonic::transport::Endpoint;

use crate::Verdict;

/// The name of the span tokio opens for each spawned task (only under `tokio_unstable`).
pub const TASK_SPAN: &str = "runtime.spawn";

/// tokio-console's own rule for shortening a registry path (tokio-console 0.1.14,
/// `src/state/mod.rs`, `truncate_registry_path`).
static CARGO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^.*/\.cargo(/registry/src/[^/]*/|/git/checkouts/)").expect("valid regex")
});
static ACTIX_SERVER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^<cargo>/actix-server-[\d.]+/src/").expect("valid regex"));

/// What the updates read so far showed.
#[derive(Debug, Default)]
pub struct Seen {
    pub updates: usize,
    /// Callsites named [`TASK_SPAN`].
    pub task_spans: usize,
    pub tasks: usize,
    /// Every source file named by a task's, a resource's or a callsite's location.
    pub locations: BTreeSet<String>,
}

impl Seen {
    pub fn absorb(&mut self, update: &Update) {
        self.updates += 1;
        let mut files = Vec::new();
        if let Some(meta) = &update.new_metadata {
            for m in meta.metadata.iter().filter_map(|m| m.metadata.as_ref()) {
                self.task_spans += usize::from(m.name == TASK_SPAN);
                files.push(m.location.as_ref());
            }
        }
        if let Some(tasks) = &update.task_update {
            self.tasks += tasks.new_tasks.len();
            files.extend(tasks.new_tasks.iter().map(|t| t.location.as_ref()));
        }
        if let Some(resources) = &update.resource_update {
            files.extend(resources.new_resources.iter().map(|r| r.location.as_ref()));
        }
        self.locations
            .extend(files.into_iter().flatten().filter_map(|l| l.file.clone()));
    }

    pub fn has_task_spans(&self) -> bool {
        self.task_spans > 0
    }
}

/// The registry locations all shorten, and actix-server's tasks are among them.
pub fn check_locations(addr: &str, locations: &BTreeSet<String>) -> Result<String, String> {
    let registry: Vec<&String> = locations
        .iter()
        .filter(|f| f.contains("/registry/src/") || f.contains("/git/checkouts/"))
        .collect();
    let long: Vec<&&String> = registry.iter().filter(|f| !CARGO.is_match(f)).collect();
    if let Some(first) = long.first() {
        return Err(format!(
            "{addr}: {} task locations tokio-console cannot shorten, e.g. {first}",
            long.len()
        ));
    }
    let shown: Vec<String> = registry
        .iter()
        .map(|f| CARGO.replace(f, "<cargo>/").into_owned())
        .collect();
    let mut actix: Vec<&String> = shown.iter().filter(|f| ACTIX_SERVER.is_match(f)).collect();
    actix.sort_by_key(|f| !f.ends_with("/service.rs"));
    let Some(example) = actix.first() else {
        let some: Vec<&String> = locations.iter().take(5).collect();
        return Err(format!(
            "{addr}: no actix-server task among {} locations: {some:?}",
            locations.len()
        ));
    };
    let longest = shown
        .iter()
        .rev()
        .max_by_key(|f| f.len())
        .unwrap_or(example);
    Ok(format!(
        "console at {addr}: {} registry locations, all shown short by tokio-console, e.g. {example} (longest: {longest})",
        registry.len()
    ))
}

/// An error with its sources, on one line (a source that repeats its wrapper's words once).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if parts.last() != Some(&part) {
            parts.push(part);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Calls `WatchUpdates` on the console at `addr` (`host:port`) and reads updates until they
/// show task spans, all within `within`.
pub async fn probe(addr: &str, within: Duration, short_locations: bool) -> Verdict {
    let fail = |why: String| Verdict::fail(Vec::new(), why);
    let secs = within.as_secs_f64();
    let deadline = Instant::now() + within;
    let endpoint = match Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(within),
        Err(e) => return fail(format!("{addr} is not an address: {}", chain(&e))),
    };
    let channel = match timeout_at(deadline, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return fail(format!("cannot connect to {addr}: {}", chain(&e))),
        Err(_) => return fail(format!("cannot connect to {addr} within {secs:.0} s")),
    };
    let mut client = InstrumentClient::new(channel);
    let mut stream = match timeout_at(deadline, client.watch_updates(InstrumentRequest {})).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return fail(format!("{addr}: WatchUpdates refused: {status}")),
        Err(_) => return fail(format!("{addr}: no gRPC response within {secs:.0} s")),
    };
    let mut seen = Seen::default();
    while !seen.has_task_spans() {
        match timeout_at(deadline, stream.message()).await {
            Ok(Ok(Some(update))) => seen.absorb(&update),
            Ok(Ok(None)) => {
                return fail(format!(
                    "{addr}: the update stream ended after {} updates, none with task spans",
                    seen.updates
                ))
            }
            Ok(Err(status)) => {
                return fail(format!("{addr}: the update stream failed: {status}"))
            }
            Err(_) => {
                return fail(format!(
                    "{addr}: gRPC answered but no task spans in {} updates within {secs:.0} s (built without --cfg tokio_unstable?)",
                    seen.updates
                ))
            }
        }
    }
    let answered = format!(
        "console at {addr}: gRPC WatchUpdates answered, {} update(s) with tokio task spans ({} tasks, {} locations)",
        seen.updates,
        seen.tasks,
        seen.locations.len()
    );
    if !short_locations {
        return Verdict::pass(Vec::new(), answered);
    }
    match check_locations(addr, &seen.locations) {
        Ok(summary) => Verdict::pass(vec![answered], summary),
        Err(why) => Verdict::fail(vec![answered], why),
    }
}

#[cfg(test)]
mod tests {
    use console_api::tasks::Task;
    use console_api::{
        register_metadata::NewMetadata, tasks::TaskUpdate, Location, Metadata, RegisterMetadata,
    };

    use super::*;

    const REG: &str = "~/.cargo/registry/src/index-abc123";

    fn location(file: &str) -> Option<Location> {
        Some(Location {
            file: Some(file.to_owned()),
            ..Default::default()
        })
    }

    fn update(span_names: &[&str], task_files: &[&str]) -> Update {
        Update {
            new_metadata: Some(RegisterMetadata {
                metadata: span_names
                    .iter()
                    .map(|name| NewMetadata {
                        id: None,
                        metadata: Some(Metadata {
                            name: name.to_string(),
                            location: location("src/main.rs"),
                            ..Default::default()
                        }),
                    })
                    .collect(),
            }),
            task_update: Some(TaskUpdate {
                new_tasks: task_files
                    .iter()
                    .map(|f| Task {
                        location: location(f),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn files(list: &[String]) -> BTreeSet<String> {
        list.iter().cloned().collect()
    }

    #[test]
    fn task_spans_are_seen_only_from_a_runtime_spawn_callsite() {
        let mut seen = Seen::default();
        seen.absorb(&update(&["request", "config_sync"], &[]));
        assert!(!seen.has_task_spans());
        seen.absorb(&update(&[TASK_SPAN], &["src/startup.rs"]));
        assert!(seen.has_task_spans());
        assert_eq!((seen.updates, seen.tasks), (2, 1));
        assert!(seen.locations.contains("src/startup.rs"));
        assert!(seen.locations.contains("src/main.rs"));
    }

    #[test]
    fn short_registry_locations_with_actix_server_pass() {
        let locations = files(&[
            "src/startup.rs".to_owned(),
            format!("{REG}/actix-server-2.6.0/src/worker.rs"),
            format!("{REG}/actix-server-2.6.0/src/service.rs"),
            format!("{REG}/tokio-1.47.1/src/runtime/blocking/pool.rs"),
        ]);
        let summary = check_locations("c:6669", &locations).unwrap();
        assert!(
            summary.contains("3 registry locations")
                && summary.contains("e.g. <cargo>/actix-server-2.6.0/src/service.rs")
                && summary.contains("(longest: <cargo>/tokio-1.47.1/src/runtime/blocking/pool.rs)"),
            "{summary}"
        );
    }

    #[test]
    fn a_registry_location_tokio_console_cannot_shorten_fails() {
        let long = "/usr/local/cargo/registry/src/index-abc123/tokio-1.47.1/src/task/spawn.rs";
        let locations = files(&[
            format!("{REG}/actix-server-2.6.0/src/service.rs"),
            long.to_owned(),
        ]);
        assert_eq!(
            check_locations("c:6669", &locations).unwrap_err(),
            format!("c:6669: 1 task locations tokio-console cannot shorten, e.g. {long}")
        );
    }

    #[test]
    fn no_actix_server_task_fails() {
        let locations = files(&[format!("{REG}/tokio-1.47.1/src/task/spawn.rs")]);
        let why = check_locations("c:6669", &locations).unwrap_err();
        assert!(
            why.starts_with("c:6669: no actix-server task among 1 locations"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_with_one_line() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let v = probe(&addr, Duration::from_secs(5), false).await;
        let why = v.failure().unwrap();
        assert!(
            why.starts_with(&format!("cannot connect to {addr}")),
            "{why}"
        );
        assert!(!why.contains('\n'));
    }

    #[tokio::test]
    async fn a_port_that_never_speaks_http2_fails_within_the_time_given() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let start = std::time::Instant::now();
        let v = probe(&addr, Duration::from_millis(500), false).await;
        assert!(!v.passed(), "{v:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
        hold.abort();
    }
}
