//! Readers for the Kubernetes side: manifests (multi-document YAML), the workloads in them,
//! Helm values merged as Helm merges them, and compose's `${VAR:-default}` values.

use serde_yaml::{Mapping, Value as Yaml};

use labcheck::repo;

pub const APP: &str = "deploy/kubernetes/app";
pub const PROFILER_PATCH: &str = "deploy/kubernetes/profiled/canary-profiler.yaml";
pub const PROFILED: &str = "deploy/kubernetes/profiled/kustomization.yaml";
pub const K8S_ALLOY: &str = "deploy/kubernetes/logstack/kubernetes.alloy";
pub const ALLOY_CONFIG_SH: &str = "deploy/kubernetes/logstack/alloy-config.sh";
pub const LOKI_VALUES: &str = "deploy/kubernetes/logstack/loki-values.yaml";
pub const LOKI_S3_VALUES: &str = "deploy/kubernetes/logstack/loki-values-s3.yaml";
pub const ALLOY_VALUES: &str = "deploy/kubernetes/logstack/alloy-values.yaml";
pub const GRAFANA_VALUES: &str = "deploy/kubernetes/logstack/grafana-values.yaml";

/// Every document of every file the app kustomization lists, in order.
pub fn app_objects() -> Vec<Yaml> {
    let kustomization = repo::yaml(&format!("{APP}/kustomization.yaml"));
    let resources = kustomization["resources"]
        .as_sequence()
        .expect("the kustomization lists resources");
    resources
        .iter()
        .flat_map(|r| {
            let file = r.as_str().expect("a resource is a file name");
            documents(&format!("{APP}/{file}"))
        })
        .collect()
}

/// The documents of a multi-document YAML file (separated by `---` lines).
pub fn documents(rel: &str) -> Vec<Yaml> {
    let separator = regex::Regex::new(r"(?m)^---[ \t]*$").expect("regex");
    separator
        .split(&repo::read(rel))
        .map(|doc| {
            serde_yaml::from_str::<Yaml>(doc)
                .unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

pub fn object<'a>(objects: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/kubernetes/app has no {kind} {name}"))
}

pub fn deployment<'a>(objects: &'a [Yaml], name: &str) -> &'a Yaml {
    object(objects, "Deployment", name)
}

/// The one container of a pod template with this name.
pub fn container<'a>(workload: &'a Yaml, name: &str) -> &'a Yaml {
    workload["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {:?}", workload["metadata"]["name"]))
}

/// A container's literal `env` values (entries with `valueFrom` left out).
pub fn env(container: &Yaml) -> Vec<(String, String)> {
    container["env"]
        .as_sequence()
        .map(|env| {
            env.iter()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_string(),
                        e["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn env_value(container: &Yaml, name: &str) -> Option<String> {
    env(container)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A compose value with its `${VAR:-default}` references resolved to their defaults: what a
/// plain `docker compose up` without .env runs with.
pub fn compose_default(value: &str) -> String {
    let re = regex::Regex::new(r"\$\{[A-Z_]+:-([^}]*)\}").expect("regex");
    re.replace_all(value, "$1").into_owned()
}

pub fn compose_service(name: &str) -> Yaml {
    let compose = repo::yaml("docker-compose.yml");
    let svc = compose["services"][name].clone();
    assert!(svc.is_mapping(), "docker-compose.yml has no service {name}");
    svc
}

/// A compose service's environment as (name, value at its default), with YAML merge keys
/// (`<<: *service-env`) expanded as compose expands them: the service's own keys win.
pub fn compose_env(name: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    flatten_env(&compose_service(name)["environment"], &mut out);
    out
}

fn flatten_env(env: &Yaml, out: &mut Vec<(String, String)>) {
    let Some(map) = env.as_mapping() else { return };
    for (k, v) in map {
        let Some(k) = k.as_str() else { continue };
        if k == "<<" {
            let mut merged = Vec::new();
            match v {
                Yaml::Sequence(maps) => maps.iter().for_each(|m| flatten_env(m, &mut merged)),
                m => flatten_env(m, &mut merged),
            }
            for (mk, mv) in merged {
                if !map.contains_key(mk.as_str()) && !out.iter().any(|(ok, _)| *ok == mk) {
                    out.push((mk, mv));
                }
            }
            continue;
        }
        let v = match v {
            Yaml::String(s) => s.clone(),
            Yaml::Number(n) => n.to_string(),
            Yaml::Bool(b) => b.to_string(),
            _ => continue,
        };
        out.retain(|(ok, _)| ok != k);
        out.push((k.to_string(), compose_default(&v)));
    }
}

/// Helm's merge of values files: maps merge key by key, the later file wins for everything
/// else (lists included).
pub fn merged_values(files: &[&str]) -> Yaml {
    let mut out = Yaml::Mapping(Mapping::new());
    for file in files {
        merge(&mut out, repo::yaml(file));
    }
    out
}

fn merge(base: &mut Yaml, over: Yaml) {
    match (base, over) {
        (Yaml::Mapping(b), Yaml::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[test]
fn helm_style_merge_merges_maps_and_replaces_lists_and_scalars() {
    let mut base: Yaml = serde_yaml::from_str("a: {x: 1, l: [1, 2]}\nb: 1").expect("yaml");
    let over: Yaml = serde_yaml::from_str("a: {y: 2, l: [3]}\nb: 2").expect("yaml");
    merge(&mut base, over);
    assert_eq!(base["a"]["x"].as_u64(), Some(1));
    assert_eq!(base["a"]["y"].as_u64(), Some(2));
    assert_eq!(base["a"]["l"].as_sequence().map(Vec::len), Some(1));
    assert_eq!(base["b"].as_u64(), Some(2));
}
