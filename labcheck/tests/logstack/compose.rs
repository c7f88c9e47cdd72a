//! The compose file's side of the log stack: pinned images, loopback ports, read-only config
//! folders, named volumes for state, healthchecks, and mounts that match the paths the
//! configs name. `docker compose config` itself runs in deploy/ci/validate-logstack.sh.

use serde_yaml::Value as Yaml;

use crate::support;

const COMPOSE: &str = "docker-compose.yml";

fn compose() -> Yaml {
    support::yaml(COMPOSE)
}

/// The one compose file, as a list for the checks that apply to every compose file.
fn compose_files() -> Vec<(&'static str, Yaml)> {
    vec![(COMPOSE, compose())]
}

fn logstack() -> (&'static str, Yaml) {
    (COMPOSE, compose())
}

fn service(name: &str) -> Yaml {
    let (file, y) = logstack();
    let s = y["services"][name].clone();
    assert!(s.is_mapping(), "{file} has no service {name}");
    s
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Short-syntax volume entries `source:target[:mode]` as (source, target, mode).
fn mounts(svc: &Yaml) -> Vec<(String, String, String)> {
    strings(&svc["volumes"])
        .iter()
        .map(|m| {
            let parts: Vec<&str> = m.split(':').collect();
            assert!(parts.len() >= 2, "volume {m:?} is source:target[:mode]");
            let mode = parts.get(2).copied().unwrap_or("rw");
            (parts[0].to_string(), parts[1].to_string(), mode.to_string())
        })
        .collect()
}

fn mount_at(svc: &Yaml, target: &str) -> (String, String) {
    mounts(svc)
        .into_iter()
        .find(|(_, t, _)| t == target)
        .map(|(s, _, m)| (s, m))
        .unwrap_or_else(|| panic!("nothing is mounted at {target}"))
}

fn tag(image: &str) -> Option<&str> {
    let name = image.rsplit('/').next().unwrap_or(image);
    name.split_once(':').map(|(_, t)| t)
}

#[test]
fn every_image_in_the_compose_files_is_pinned() {
    let files = compose_files();
    assert!(!files.is_empty(), "no compose file");
    let mut images = 0;
    for (file, y) in files {
        for (name, svc) in y["services"].as_mapping().expect("services").iter() {
            let Some(image) = svc["image"].as_str() else {
                continue;
            };
            images += 1;
            // `${VAR:-default}`: the default is what a plain `docker compose up` pulls.
            let image = match image.split_once(":-") {
                Some((_, rest)) if image.starts_with("${") => rest.trim_end_matches('}'),
                _ => image,
            };
            let pinned = image.contains("@sha256:")
                || tag(image).is_some_and(|t| !t.is_empty() && t != "latest");
            assert!(
                pinned,
                "{file}: service {name:?} image {image:?} is not pinned"
            );
        }
    }
    assert!(images >= 3, "loki, alloy and grafana at least");
}

#[test]
fn every_published_port_binds_loopback() {
    for (file, y) in compose_files() {
        for (name, svc) in y["services"].as_mapping().expect("services").iter() {
            for port in svc["ports"].as_sequence().cloned().unwrap_or_default() {
                let ok = match &port {
                    Yaml::String(p) => p.starts_with("127.0.0.1:"),
                    Yaml::Mapping(_) => port["host_ip"].as_str() == Some("127.0.0.1"),
                    _ => false,
                };
                assert!(ok, "{file}: {name:?} publishes {port:?} beyond 127.0.0.1");
            }
        }
    }
}

#[test]
fn the_log_stack_publishes_its_documented_ports_on_loopback() {
    // `${VAR:-3000}` publishes 3000 unless the user's .env says otherwise.
    let default = regex::Regex::new(r"\$\{[A-Z_]+:-([0-9]+)\}").expect("regex");
    for (name, port) in [("loki", "3100"), ("alloy", "12345"), ("grafana", "3000")] {
        let ports: Vec<String> = strings(&service(name)["ports"])
            .iter()
            .map(|p| default.replace_all(p, "$1").into_owned())
            .collect();
        assert_eq!(ports, [format!("127.0.0.1:{port}:{port}")], "{name}");
    }
}

#[test]
fn configs_are_mounted_read_only_from_one_folder_per_service() {
    let loki = service("loki");
    assert_eq!(
        mount_at(&loki, "/etc/loki"),
        ("./deploy/loki".into(), "ro".into())
    );
    assert!(strings(&loki["command"]).contains(&"-config.file=/etc/loki/config.yaml".to_string()));
    assert!(support::root().join(support::LOKI_CONFIG).exists());

    let alloy = service("alloy");
    assert_eq!(
        mount_at(&alloy, "/etc/alloy"),
        ("./deploy/alloy".into(), "ro".into())
    );
    assert!(strings(&alloy["command"]).contains(&"/etc/alloy/config.alloy".to_string()));

    let grafana = service("grafana");
    assert_eq!(
        mount_at(&grafana, "/etc/grafana/provisioning"),
        ("./grafana/provisioning".into(), "ro".into())
    );
    let providers = support::yaml(support::DASHBOARD_PROVIDERS);
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path")
        .to_string();
    assert_eq!(
        mount_at(&grafana, &path),
        ("./grafana/dashboards".into(), "ro".into())
    );
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .expect("a home dashboard");
    assert_eq!(home, format!("{path}/tail-latency-lab.json"));
}

#[test]
fn state_lives_in_named_volumes() {
    let (file, y) = logstack();
    let alloy_storage = strings(&service("alloy")["command"])
        .iter()
        .find_map(|a| a.strip_prefix("--storage.path=").map(str::to_string))
        .expect("alloy runs with --storage.path");
    let loki_path = support::yaml(support::LOKI_CONFIG)["common"]["path_prefix"]
        .as_str()
        .expect("loki path_prefix")
        .to_string();
    for (svc, target) in [
        ("loki", loki_path),
        ("alloy", alloy_storage),
        ("grafana", "/var/lib/grafana".to_string()),
    ] {
        let (source, _) = mount_at(&service(svc), &target);
        assert!(
            !source.starts_with('.') && !source.starts_with('/'),
            "{svc}: {target} is a bind mount, not a named volume"
        );
        assert!(
            y["volumes"]
                .as_mapping()
                .is_some_and(|v| v.contains_key(source.as_str())),
            "{file}: volume {source} is not declared"
        );
    }
}

#[test]
fn alloy_reads_the_docker_socket_read_only_and_serves_its_ui_to_the_host() {
    let alloy = service("alloy");
    assert_eq!(
        mount_at(&alloy, "/var/run/docker.sock"),
        ("/var/run/docker.sock".into(), "ro".into())
    );
    let command = strings(&alloy["command"]);
    assert_eq!(command.first().map(String::as_str), Some("run"));
    assert!(command.contains(&"--server.http.listen-addr=0.0.0.0:12345".to_string()));
    // The config talks to the same socket.
    let config = support::read(support::ALLOY_CONFIG);
    assert!(config.contains("\"unix:///var/run/docker.sock\""));
}

#[test]
fn loki_is_healthchecked_with_its_own_probe_and_a_start_period() {
    let loki = service("loki");
    let hc = &loki["healthcheck"];
    assert_eq!(strings(&hc["test"]), ["CMD", "/usr/bin/loki", "-health"]);
    assert!(hc["start_period"].as_str().is_some(), "a start_period");
    for dependent in ["alloy", "grafana"] {
        assert_eq!(
            service(dependent)["depends_on"]["loki"]["condition"].as_str(),
            Some("service_healthy"),
            "{dependent} waits for a ready Loki"
        );
    }
}

#[test]
fn grafana_is_anonymous_with_explore_and_fetches_nothing_at_start() {
    let env = &service("grafana")["environment"];
    let get = |k: &str| {
        env[k]
            .as_str()
            .unwrap_or_else(|| panic!("grafana env {k} unset"))
    };
    assert_eq!(get("GF_AUTH_ANONYMOUS_ENABLED"), "true");
    assert!(
        matches!(get("GF_AUTH_ANONYMOUS_ORG_ROLE"), "Editor" | "Admin"),
        "Explore needs Editor"
    );
    assert_eq!(get("GF_AUTH_DISABLE_LOGIN_FORM"), "true");
    assert_eq!(get("GF_PLUGINS_PREINSTALL_DISABLED"), "true");
    assert_eq!(get("GF_ANALYTICS_CHECK_FOR_UPDATES"), "false");
    assert_eq!(get("GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES"), "false");
    assert_eq!(get("GF_ANALYTICS_REPORTING_ENABLED"), "false");
}

#[test]
fn app_containers_never_wait_for_the_log_stack() {
    let (_, y) = logstack();
    for (name, svc) in y["services"].as_mapping().expect("services").iter() {
        let name = name.as_str().unwrap_or_default();
        if ["loki", "alloy", "grafana"].contains(&name) {
            continue;
        }
        let deps = &svc["depends_on"];
        for stack in ["loki", "alloy", "grafana"] {
            let listed = deps.get(stack).is_some() || strings(deps).iter().any(|d| d == stack);
            assert!(!listed, "{name} depends on {stack}");
        }
    }
}

#[test]
fn the_app_services_carry_the_label_alloy_selects_them_by_and_reads_flavor_from() {
    let config = support::alloy_config();
    let filter = config.only("discovery.docker").only("filter");
    assert_eq!(filter.str_attr("name"), Some("label"));
    let selected: Vec<&str> = filter
        .attr("values")
        .and_then(crate::alloy::Value::as_list)
        .map(|l| l.iter().filter_map(crate::alloy::Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(selected, ["lab.flavor"]);
    let y = compose();
    for (svc, flavor) in [
        ("api", "release"),
        ("canary", "canary"),
        ("loadgen", "none"),
    ] {
        assert_eq!(
            y["services"][svc]["labels"]["lab.flavor"].as_str(),
            Some(flavor),
            "{svc}: deploy/alloy/config.alloy selects and reads lab.flavor"
        );
    }
}
