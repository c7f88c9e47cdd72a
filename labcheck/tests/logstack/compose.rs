//! The compose file's side of the log stack: pinned images, loopback ports, read-only config
//! folders, named volumes for state, healthchecks, and mounts that match the paths the
//! configs name; and `.env` against the compose file's defaults. `docker compose config`
//! itself runs in deploy/ci/validate-logstack.sh.

use serde_yaml::Value as Yaml;

use labcheck::repo;

const COMPOSE: &str = "docker-compose.yml";

fn compose() -> Yaml {
    repo::yaml(COMPOSE)
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

/// `${VAR:-default}` and `${VAR}` references: (name, default).
fn variable_references(text: &str) -> Vec<(String, Option<String>)> {
    let reference =
        regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}").expect("regex");
    // `$$` is a literal dollar sign.
    let text = text.replace("$$", "");
    let bare = regex::Regex::new(r"\$[A-Za-z_]").expect("regex");
    assert!(
        !bare.is_match(&text),
        "write `${{VAR:-default}}`, not `$VAR`: {text}"
    );
    reference
        .captures_iter(&text)
        .map(|c| {
            let default = match c.get(2).map(|m| m.as_str()) {
                Some(":-" | "-") => Some(c[3].to_string()),
                None => None,
                Some(other) => panic!("`${{{}{other}…}}`: teach the check this form", &c[1]),
            };
            (c[1].to_string(), default)
        })
        .collect()
}

/// A string with every `${VAR:-default}` replaced by its default: what compose sees without
/// `.env`.
fn with_defaults(text: &str) -> String {
    let reference = regex::Regex::new(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}").expect("regex");
    reference.replace_all(text, "$1").into_owned()
}

/// Short-syntax volume entries `source:target[:mode]` as (source, target, mode), variables
/// at their defaults.
fn mounts(svc: &Yaml) -> Vec<(String, String, String)> {
    strings(&svc["volumes"])
        .iter()
        .map(|m| {
            let m = with_defaults(m);
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
fn the_log_stack_publishes_its_documented_ports_on_loopback_each_movable_in_env() {
    for (name, var, port) in [
        ("loki", "LOKI_PORT", "3100"),
        ("alloy", "ALLOY_PORT", "12345"),
        ("grafana", "GRAFANA_PORT", "3000"),
    ] {
        let ports = strings(&service(name)["ports"]);
        // `${VAR:-3000}` publishes 3000 unless the user's .env says otherwise.
        assert_eq!(
            ports,
            [format!("127.0.0.1:${{{var}:-{port}}}:{port}")],
            "{name}"
        );
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
    assert!(repo::root().join(repo::LOKI_CONFIG).exists());

    let alloy = service("alloy");
    assert_eq!(
        mount_at(&alloy, "/etc/alloy"),
        ("./deploy/alloy".into(), "ro".into())
    );
    assert!(strings(&alloy["command"]).contains(&"/etc/alloy/config.alloy".to_string()));

    // Grafana: each provisioning folder the repository fills, and nothing over the image's
    // others (alerting, plugins, ...), which Grafana scans too.
    let grafana = service("grafana");
    let provisioning = "/etc/grafana/provisioning";
    let mut mounted: Vec<(String, String, String)> = mounts(&grafana)
        .into_iter()
        .filter(|(_, target, _)| target.starts_with(provisioning))
        .collect();
    mounted.sort();
    let mut folders: Vec<String> = std::fs::read_dir(repo::root().join("grafana/provisioning"))
        .expect("grafana/provisioning")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let expected: Vec<(String, String, String)> = folders
        .iter()
        .map(|f| {
            (
                format!("./grafana/provisioning/{f}"),
                format!("{provisioning}/{f}"),
                "ro".to_string(),
            )
        })
        .collect();
    assert_eq!(mounted, expected);
    for file in [repo::DATASOURCES, repo::DASHBOARD_PROVIDERS] {
        assert!(
            expected
                .iter()
                .any(|(source, _, _)| file.starts_with(&source[2..])),
            "{file} is not in a mounted folder"
        );
    }
    let providers = repo::yaml(repo::DASHBOARD_PROVIDERS);
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
    let loki_path = repo::yaml(repo::LOKI_CONFIG)["common"]["path_prefix"]
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
fn alloy_reads_the_docker_socket_named_by_docker_sock_and_serves_its_ui_to_the_host() {
    let alloy = service("alloy");
    // The host's socket path is a variable (rootless Docker, Podman); `:ro` keeps the socket
    // file from being replaced, nothing more.
    assert!(
        strings(&alloy["volumes"])
            .contains(&"${DOCKER_SOCK:-/var/run/docker.sock}:/var/run/docker.sock:ro".to_string()),
        "{:?}",
        alloy["volumes"]
    );
    let command = strings(&alloy["command"]);
    assert_eq!(command.first().map(String::as_str), Some("run"));
    assert!(command.contains(&"--server.http.listen-addr=0.0.0.0:12345".to_string()));
    // The config talks to the same socket.
    let config = repo::read(repo::ALLOY_CONFIG);
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
fn grafana_is_anonymous_with_explore_and_its_known_start_up_calls_are_off() {
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
    let config = repo::alloy_config();
    let filter = config.only("discovery.docker").only("filter");
    assert_eq!(filter.str_attr("name"), Some("label"));
    let selected: Vec<&str> = filter
        .attr("values")
        .and_then(labcheck::alloy::Value::as_list)
        .map(|l| {
            l.iter()
                .filter_map(labcheck::alloy::Value::as_str)
                .collect()
        })
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

/// `.env` as compose reads it: (key, value), in order. Only the forms the file uses: comments,
/// blank lines and `KEY=value` (quotes stripped); anything else is a failure, not a guess.
fn dotenv() -> Vec<(String, String)> {
    let line = regex::Regex::new(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$").expect("regex");
    repo::read(".env")
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| {
            let c = line
                .captures(l)
                .unwrap_or_else(|| panic!(".env line {}: not KEY=value: {l:?}", n + 1));
            let value = c[2].trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            (c[1].to_string(), value.to_string())
        })
        .collect()
}

/// Every string value in the compose file (comments are not values).
fn compose_strings(v: &Yaml, out: &mut Vec<String>) {
    match v {
        Yaml::String(s) => out.push(s.clone()),
        Yaml::Sequence(items) => items.iter().for_each(|i| compose_strings(i, out)),
        Yaml::Mapping(map) => map.values().for_each(|i| compose_strings(i, out)),
        Yaml::Tagged(t) => compose_strings(&t.value, out),
        _ => {}
    }
}

#[test]
fn env_and_the_compose_defaults_agree_and_every_env_key_is_used() {
    let env = dotenv();
    let mut keys = std::collections::BTreeSet::new();
    for (key, _) in &env {
        assert!(keys.insert(key.clone()), ".env sets {key} twice");
    }
    let mut values = Vec::new();
    compose_strings(&compose(), &mut values);
    let mut defaults = std::collections::BTreeMap::new();
    for text in &values {
        for (name, default) in variable_references(text) {
            // A missing .env line falls back to the compose default: there must be one, and
            // it must be what .env says, or deleting a line would change the lab.
            let default = default
                .unwrap_or_else(|| panic!("compose uses ${{{name}}} without a default: {text}"));
            if let Some(other) = defaults.insert(name.clone(), default.clone()) {
                assert_eq!(
                    other, default,
                    "two defaults for {name} in the compose file"
                );
            }
        }
    }
    for (name, default) in &defaults {
        let in_env = env.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        assert_eq!(
            in_env,
            Some(default),
            "{name}: .env and docker-compose.yml's `${{{name}:-{default}}}` disagree"
        );
    }
    for (key, _) in &env {
        assert!(
            defaults.contains_key(key),
            ".env sets {key}, which docker-compose.yml never reads"
        );
    }
    assert!(defaults.len() >= 10);
}

#[test]
fn the_variable_reader_knows_defaults_bare_references_and_escaped_dollars() {
    assert_eq!(
        variable_references("127.0.0.1:${P:-3000}:3000 $${NOT} ${Q}"),
        [
            ("P".to_string(), Some("3000".to_string())),
            ("Q".to_string(), None)
        ]
    );
    assert_eq!(
        with_defaults("${S:-/var/run/docker.sock}:/x:ro"),
        "/var/run/docker.sock:/x:ro"
    );
}
