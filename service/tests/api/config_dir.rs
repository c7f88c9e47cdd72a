//! The default config folder is found at run time, so a binary copied elsewhere keeps working;
//! a missing folder is said once at start-up, and a `CONFIG_DIR` that does not exist stops the
//! binary with one line.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use test_support::DEADLINE;

use crate::helpers::spawn_binary;

/// A temporary tree holding a copy of the service binary in `bin/` and an empty `elsewhere/`.
struct CopiedBinary {
    root: tempfile::TempDir,
}

impl CopiedBinary {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("bin")).unwrap();
        std::fs::create_dir(root.path().join("elsewhere")).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_service"),
            root.path().join("bin/service"),
        )
        .unwrap();
        Self { root }
    }

    fn binary(&self) -> PathBuf {
        self.root.path().join("bin/service")
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    /// Writes `app.toml` with `body` into the folder `relative`, creating it.
    fn config_folder(&self, relative: &str, body: &str) {
        let dir = self.path(relative);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.toml"), body).unwrap();
    }
}

async fn sync_read(binary: &Path, cwd: &Path) -> (u16, String) {
    let app = spawn_binary(binary, Some(cwd), &[("SLOW_DISK_MS", "1")]).await;
    let response = app.get("/config/sync/app.toml").await;
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_copied_binary_reads_the_sample_folder_beside_it() {
    let copy = CopiedBinary::new();
    copy.config_folder("bin/sample-config", "beside = true\n");
    let (status, body) = sync_read(&copy.binary(), &copy.path("elsewhere")).await;
    assert_eq!((status, body.as_str()), (200, "beside = true\n"));
}

#[tokio::test]
async fn a_copied_binary_run_from_a_checkout_root_reads_service_sample_config() {
    let copy = CopiedBinary::new();
    copy.config_folder("checkout/service/sample-config", "checkout = true\n");
    let (status, body) = sync_read(&copy.binary(), &copy.path("checkout")).await;
    assert_eq!((status, body.as_str()), (200, "checkout = true\n"));
}

#[tokio::test]
async fn a_copied_binary_without_a_config_folder_says_so_once_and_answers_404() {
    let copy = CopiedBinary::new();
    let app = spawn_binary(&copy.binary(), Some(&copy.path("elsewhere")), &[]).await;
    let warnings: Vec<_> = app
        .lines()
        .into_iter()
        .filter(|l| {
            l.message()
                .is_some_and(|m| m.starts_with("no config folder"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{}", app.dump());
    let tried = warnings[0].json.as_ref().unwrap()["fields"]["tried"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        tried.contains(&copy.path("bin/sample-config").display().to_string()),
        "{tried}"
    );
    let response = app.get("/config/sync/app.toml").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("app.toml"),
        "{body}"
    );
}

#[test]
fn a_config_dir_that_is_not_a_folder_stops_the_binary_with_one_line() {
    let copy = CopiedBinary::new();
    let missing = copy.path("no-such-folder");
    let file = copy.binary();
    for config_dir in [&missing, &file] {
        let mut child = Command::new(copy.binary())
            .current_dir(copy.path("elsewhere"))
            .env_clear()
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("CONFIG_DIR", config_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!(
                    "CONFIG_DIR={} did not stop the binary",
                    config_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("CONFIG_DIR"), "{stderr}");
        assert!(
            stderr.contains(&config_dir.display().to_string()),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "it started: {:?}", output.stdout);
    }
}
