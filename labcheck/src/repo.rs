//! The repository's files the checks read: their paths, and readers that fail the test with
//! the file's name.

use std::path::PathBuf;

use crate::alloy::{self, Block};

/// The repository root (labcheck's parent folder).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("labcheck lives in the repository root")
        .to_path_buf()
}

pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

pub fn yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

pub const ALLOY_CONFIG: &str = "deploy/alloy/config.alloy";
pub const LOKI_CONFIG: &str = "deploy/loki/config.yaml";
pub const QUERIES: &str = "grafana/queries.json";
pub const DASHBOARD: &str = "grafana/dashboards/tail-latency-lab.json";
pub const DATASOURCES: &str = "grafana/provisioning/datasources/loki.yaml";
pub const DASHBOARD_PROVIDERS: &str = "grafana/provisioning/dashboards/lab.yaml";

pub fn alloy_config() -> Block {
    alloy::parse(&read(ALLOY_CONFIG)).unwrap_or_else(|e| panic!("{ALLOY_CONFIG}: {e}"))
}

/// grafana/queries.json as name -> LogQL (the `_comment` left out).
pub fn queries() -> Vec<(String, String)> {
    json(QUERIES)
        .as_object()
        .expect("queries.json is an object")
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("queries.json: {k} is not a string"));
            (k.clone(), v.to_string())
        })
        .collect()
}

pub fn query(name: &str) -> String {
    queries()
        .into_iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("queries.json has no {name}"))
        .1
}
