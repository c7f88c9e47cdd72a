//! Alloy on Kubernetes (`deploy/kubernetes/logstack/`): the config alloy-config.sh assembles
//! runs the compose lab's pipeline and writer blocks unchanged, and gives each pod of the app
//! manifests the labels compose gives the same service's containers.

use std::collections::BTreeMap;
use std::process::Command;

use serde_yaml::Value as Yaml;

use crate::kube;
use labcheck::alloy::{self, Block, Value};
use labcheck::pipeline::{self, Labels};
use labcheck::repo;

/// The Alloy config for Kubernetes, as the chart receives it: alloy-config.sh's output.
fn assembled() -> Block {
    let out = Command::new("bash")
        .arg(repo::root().join(kube::ALLOY_CONFIG_SH))
        .output()
        .expect("bash runs alloy-config.sh");
    assert!(
        out.status.success(),
        "alloy-config.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    alloy::parse(&text).unwrap_or_else(|e| panic!("alloy-config.sh's output: {e}"))
}

fn kubernetes_part() -> Block {
    alloy::parse(&repo::read(kube::K8S_ALLOY))
        .unwrap_or_else(|e| panic!("{}: {e}", kube::K8S_ALLOY))
}

#[test]
fn the_kubernetes_config_runs_the_compose_pipeline_and_writer_unchanged() {
    let (k8s, compose) = (assembled(), repo::alloy_config());
    for (name, label) in [("loki.process", "service_json"), ("loki.write", "lab")] {
        assert_eq!(
            format!("{:?}", k8s.component(name, label)),
            format!("{:?}", compose.component(name, label)),
            "{name} \"{label}\" differs from deploy/alloy/config.alloy's"
        );
    }
}

#[test]
fn the_kubernetes_part_defines_no_pipeline_or_writer_of_its_own() {
    let part = kubernetes_part();
    assert_eq!(
        part.blocks_named("loki.write").count(),
        0,
        "the writer comes from compose"
    );
    for process in part.blocks_named("loki.process") {
        assert_ne!(process.label.as_deref(), Some("service_json"));
        let stages: Vec<&str> = process.blocks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            stages,
            ["stage.cri"],
            "{process:?}: only the runtime's envelope is unwrapped here; the JSON stages are \
             compose's"
        );
    }
}

/// Every `a.b.label.export` reference names a component of the config.
#[test]
fn every_reference_names_a_component_of_the_assembled_config() {
    let config = assembled();
    let mut refs = Vec::new();
    for component in &config.blocks {
        collect_refs(component, &mut refs);
    }
    assert!(
        refs.len() >= 5,
        "the pipeline is wired by references: {refs:?}"
    );
    for r in refs {
        let parts: Vec<&str> = r.split('.').collect();
        assert!(parts.len() >= 4, "reference {r} is not name.label.export");
        let name = parts[..parts.len() - 2].join(".");
        let label = parts[parts.len() - 2];
        assert!(
            config
                .blocks_named(&name)
                .any(|b| b.label.as_deref() == Some(label)),
            "{r} names no component {name} \"{label}\""
        );
    }
    for docker_only in ["discovery.docker", "loki.source.docker"] {
        assert_eq!(
            config.blocks_named(docker_only).count(),
            0,
            "{docker_only} on Kubernetes"
        );
    }
}

fn collect_refs(block: &Block, out: &mut Vec<String>) {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Ref(r) => out.push(r.clone()),
            Value::List(items) | Value::Call(_, items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(pairs) => pairs.iter().for_each(|(_, i)| walk(i, out)),
            _ => {}
        }
    }
    block.attrs.iter().for_each(|(_, v)| walk(v, out));
    block.blocks.iter().for_each(|b| collect_refs(b, out));
}

#[test]
fn the_sources_chain_file_tailing_through_the_cri_unwrap_into_the_compose_pipeline() {
    let config = assembled();
    let forward = |name: &str, label: &str| -> Vec<String> {
        config
            .component(name, label)
            .attr("forward_to")
            .and_then(Value::as_list)
            .map(|l| {
                l.iter()
                    .map(|v| match v {
                        Value::Ref(r) => r.clone(),
                        other => panic!("forward_to holds {other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let source = config.only("loki.source.file");
    let source_label = source.label.clone().expect("a label");
    assert_eq!(
        forward("loki.source.file", &source_label),
        ["loki.process.cri.receiver"]
    );
    assert_eq!(
        forward("loki.process", "cri"),
        ["loki.process.service_json.receiver"]
    );
    assert_eq!(
        forward("loki.process", "service_json"),
        ["loki.write.lab.receiver"]
    );
}

/// Prometheus-style discovery label for a pod label: anything outside [A-Za-z0-9_] becomes `_`.
fn pod_label(key: &str) -> String {
    let sanitized: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("__meta_kubernetes_pod_label_{sanitized}")
}

/// The discovery target of one container of a workload in deploy/kubernetes/app.
fn pod_target(workload: &Yaml, container: &str, pod: &str, uid: &str) -> Labels {
    let mut target = BTreeMap::from([
        (
            "__meta_kubernetes_namespace".to_string(),
            "taillab".to_string(),
        ),
        ("__meta_kubernetes_pod_name".to_string(), pod.to_string()),
        ("__meta_kubernetes_pod_uid".to_string(), uid.to_string()),
        (
            "__meta_kubernetes_pod_container_name".to_string(),
            container.to_string(),
        ),
    ]);
    let labels = workload["spec"]["template"]["metadata"]["labels"]
        .as_mapping()
        .expect("pod template labels");
    for (k, v) in labels {
        let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
            panic!("label {k:?}: {v:?} is not a string pair");
        };
        target.insert(pod_label(k), v.to_string());
    }
    target
}

/// The target `discovery.docker` gives a compose service's container.
fn container_target(service: &str, container_id: &str) -> Labels {
    let mut target = BTreeMap::from([
        (
            "__meta_docker_container_id".to_string(),
            container_id.to_string(),
        ),
        (
            "__meta_docker_container_label_com_docker_compose_service".to_string(),
            service.to_string(),
        ),
    ]);
    let svc = kube::compose_service(service);
    for (k, v) in svc["labels"].as_mapping().cloned().unwrap_or_default() {
        let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
            continue;
        };
        let sanitized: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        target.insert(
            format!("__meta_docker_container_label_{sanitized}"),
            v.to_string(),
        );
    }
    target
}

const UID: &str = "5f0c6d2e-8a41-4b7f-9c3d-2e1f0a9b8c7d";

#[test]
fn every_pod_gets_the_labels_compose_gives_the_same_service_with_its_pod_name_as_instance() {
    let (k8s, compose) = (assembled(), repo::alloy_config());
    let objects = kube::app_objects();
    for (workload, container) in [
        ("api", "service"),
        ("canary", "service"),
        ("loadgen", "loadgen"),
    ] {
        let pod = format!("{workload}-7d9f8c6b5-x2k4q");
        let target = pod_target(kube::deployment(&objects, workload), container, &pod, UID);
        let relabelled = pipeline::relabel(k8s.only("discovery.relabel"), target)
            .unwrap_or_else(|| panic!("{workload}'s {container} container is not read"));
        let mut labels = pipeline::entry_labels(&relabelled);

        let container_id = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef12";
        let docker = pipeline::relabel(
            compose.only("discovery.relabel"),
            container_target(workload, container_id),
        )
        .unwrap_or_else(|| panic!("compose's {workload} is not read"));
        let mut compose_labels = pipeline::entry_labels(&docker);

        assert_eq!(
            labels.remove("instance"),
            Some(pod.clone()),
            "{workload}: instance"
        );
        assert!(compose_labels.remove("instance").is_some());
        assert_eq!(
            labels, compose_labels,
            "{workload}: service and flavor as in compose"
        );
        assert_eq!(labels.get("service").map(String::as_str), Some(workload));
    }
}

#[test]
fn the_profiler_beside_the_canary_and_pods_outside_the_lab_are_not_read() {
    let k8s = assembled();
    let relabel = k8s.only("discovery.relabel");
    let objects = kube::app_objects();
    let canary = kube::deployment(&objects, "canary");
    let profiler = pod_target(canary, "profiler", "canary-1", UID);
    assert!(
        pipeline::relabel(relabel, profiler).is_none(),
        "the profiler's output"
    );

    let mut grafana = pod_target(canary, "grafana", "grafana-1", UID);
    grafana.insert(pod_label("app.kubernetes.io/name"), "grafana".into());
    assert!(
        pipeline::relabel(relabel, grafana).is_none(),
        "a pod that is not the lab's"
    );
}

/// The `__path__` glob Alloy expands (`*` within one path segment), as a regex.
fn glob_regex(glob: &str) -> regex::Regex {
    let pattern = regex::escape(glob).replace(r"\*", "[^/]*");
    regex::Regex::new(&format!("^{pattern}$")).expect("glob regex")
}

#[test]
fn the_log_path_is_the_kubelet_layout_of_that_container_only() {
    let k8s = assembled();
    let objects = kube::app_objects();
    let pod = "api-7d9f8c6b5-x2k4q";
    let target = pod_target(kube::deployment(&objects, "api"), "service", pod, UID);
    let relabelled = pipeline::relabel(k8s.only("discovery.relabel"), target).expect("kept");
    let glob = relabelled.get("__path__").expect("a __path__");
    let re = glob_regex(glob);
    assert!(re.is_match(&format!("/var/log/pods/taillab_{pod}_{UID}/service/0.log")));
    assert!(re.is_match(&format!("/var/log/pods/taillab_{pod}_{UID}/service/3.log")));
    assert!(!re.is_match(&format!("/var/log/pods/taillab_{pod}_{UID}/profiler/0.log")));
    assert!(!re.is_match(&format!(
        "/var/log/pods/taillab_other_{}/service/0.log",
        "0000"
    )));
    assert!(!re.is_match(&format!(
        "/var/log/pods/taillab_{pod}_{UID}/service/0.log.gz"
    )));
}

#[test]
fn discovery_watches_the_app_namespace_for_the_label_compose_selects_by() {
    let k8s = kubernetes_part();
    let discovery = k8s.only("discovery.kubernetes");
    let namespaces: Vec<&str> = discovery
        .only("namespaces")
        .attr("names")
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let kustomization = repo::yaml(&format!("{}/kustomization.yaml", kube::APP));
    assert_eq!(
        namespaces,
        [kustomization["namespace"].as_str().expect("a namespace")]
    );

    let selectors = discovery.only("selectors");
    let label = selectors.str_attr("label").expect("a label selector");
    let compose_filter = repo::alloy_config();
    let compose_values = compose_filter
        .only("discovery.docker")
        .only("filter")
        .attr("values")
        .and_then(Value::as_list)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert_eq!(
        vec![label.to_string()],
        compose_values,
        "the same selecting label"
    );
    // Each node's Alloy reads its own node's pods: the chart sets HOSTNAME to the node name.
    assert!(matches!(selectors.attr("field"), Some(Value::Call(f, _)) if f == "string.format"));

    for workload in ["api", "canary", "loadgen"] {
        let objects = kube::app_objects();
        let labels =
            &kube::deployment(&objects, workload)["spec"]["template"]["metadata"]["labels"];
        assert!(
            labels[label].as_str().is_some(),
            "{workload} pods carry {label}"
        );
    }
}
