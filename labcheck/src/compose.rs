//! A check on the compose file as Docker Compose itself renders it
//! (`docker compose --env-file /dev/null config --format json`): without `.env` every tunable
//! falls back to the lab's default, and every published port binds the loopback. The static
//! twin (`tests/logstack/compose.rs`) reads the YAML; this one sees Compose's interpolation.

use serde_json::Value;

use crate::Verdict;

const MIB: u64 = 1 << 20;

/// A byte count Compose wrote as a number or a numeric string.
fn bytes(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// `got` against `want`, as `name: got, expected want` when they differ.
fn differ(name: &str, got: Option<String>, want: &str) -> Option<String> {
    let got = got.unwrap_or_else(|| "(unset)".to_owned());
    (got != want).then(|| format!("{name}: {got}, expected {want}"))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The rendered config's defaults and published ports.
pub fn defaults(config: &Value) -> Verdict {
    let services = &config["services"];
    let canary = &services["canary"];
    let checks = [
        (
            "api replicas",
            text(&services["api"]["deploy"]["replicas"]),
            "3",
        ),
        (
            "api SLOW_DISK_MS",
            text(&services["api"]["environment"]["SLOW_DISK_MS"]),
            "300",
        ),
        (
            "loadgen LOADGEN_RATE",
            text(&services["loadgen"]["environment"]["LOADGEN_RATE"]),
            "200",
        ),
        (
            "loadgen LOADGEN_MIX",
            text(&services["loadgen"]["environment"]["LOADGEN_MIX"]),
            "orders=99,config_sync=1",
        ),
        (
            "canary memory limit",
            bytes(&canary["mem_limit"]).map(|b| b.to_string()),
            &(512 * MIB).to_string(),
        ),
        (
            "canary memory+swap limit",
            bytes(&canary["memswap_limit"]).map(|b| b.to_string()),
            &(512 * MIB).to_string(),
        ),
        ("canary restart", text(&canary["restart"]), "unless-stopped"),
        (
            "canary TOKIO_CONSOLE_RETENTION",
            text(&canary["environment"]["TOKIO_CONSOLE_RETENTION"]),
            "10s",
        ),
        (
            "canary SHORT_PATHS",
            text(&canary["build"]["args"]["SHORT_PATHS"]),
            "yes",
        ),
    ];
    let wrong: Vec<String> = checks
        .into_iter()
        .filter_map(|(name, got, want)| differ(name, got, want))
        .collect();
    if !wrong.is_empty() {
        return Verdict::fail(
            Vec::new(),
            format!("defaults without .env: {}", wrong.join("; ")),
        );
    }
    let Some(services) = services.as_object() else {
        return Verdict::fail(Vec::new(), "the rendered config has no services");
    };
    for (name, svc) in services {
        let ports = svc["ports"].as_array().map_or(&[][..], Vec::as_slice);
        if let Some(p) = ports.iter().find(|p| p["host_ip"] != "127.0.0.1") {
            return Verdict::fail(Vec::new(), format!("{name} publishes {p} beyond loopback"));
        }
    }
    Verdict::pass(
        Vec::new(),
        "ok: defaults apply without .env (the canary: 512 MiB, no swap, restarted unless stopped); every published port binds 127.0.0.1",
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rendered() -> Value {
        json!({"services": {
            "api": {"deploy": {"replicas": 3}, "environment": {"SLOW_DISK_MS": "300"}},
            "loadgen": {"environment": {"LOADGEN_RATE": "200", "LOADGEN_MIX": "orders=99,config_sync=1"}},
            "canary": {
                "mem_limit": "536870912", "memswap_limit": 536870912, "restart": "unless-stopped",
                "environment": {"TOKIO_CONSOLE_RETENTION": "10s"},
                "build": {"args": {"SHORT_PATHS": "yes"}},
                "ports": [{"host_ip": "127.0.0.1", "target": 8080, "published": "8080"}]
            }
        }})
    }

    #[test]
    fn the_labs_defaults_pass() {
        let v = defaults(&rendered());
        assert!(v.passed(), "{v:?}");
    }

    #[test]
    fn a_changed_default_fails_naming_it() {
        let mut c = rendered();
        c["services"]["api"]["deploy"]["replicas"] = json!(2);
        assert_eq!(
            defaults(&c).failure(),
            Some("defaults without .env: api replicas: 2, expected 3")
        );
        let mut c = rendered();
        c["services"]["canary"]["memswap_limit"] = Value::Null;
        assert_eq!(
            defaults(&c).failure(),
            Some("defaults without .env: canary memory+swap limit: (unset), expected 536870912")
        );
        let mut c = rendered();
        c["services"]["canary"]["build"]["args"]["SHORT_PATHS"] = json!("no");
        assert!(!defaults(&c).passed());
    }

    #[test]
    fn a_port_beyond_loopback_fails() {
        let mut c = rendered();
        c["services"]["loadgen"]["ports"] = json!([{"target": 9000, "published": "9000"}]);
        let why = defaults(&c).failure().unwrap().to_owned();
        assert!(why.starts_with("loadgen publishes"), "{why}");
    }
}
