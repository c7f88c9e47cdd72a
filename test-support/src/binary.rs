//! The `service` binary for suites of other packages: Cargo gives an integration test the path
//! of its own package's binaries only (`CARGO_BIN_EXE_…`), so these build it with the same
//! cargo, which is a no-op when it is fresh, and take the path cargo reports.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

/// The path of the `service` binary (its default features), built once per test process.
pub fn service_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(build_service).clone()
}

fn build_service() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support lives in the workspace root");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--quiet", "-p", "service", "--bin", "service"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo build -p service failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("cargo reports the service executable")
}
