//! The app side (`deploy/kubernetes/app`, `deploy/kubernetes/profiled`) against compose: the
//! same images, settings and ports, the probes and the drain, the console reachable only
//! through port-forward, and each container's security context.

use serde_yaml::Value as Yaml;

use crate::kube::{self, app_objects, container, deployment, env_value};
use labcheck::repo;

/// (Deployment, its app container, the compose service it ports).
const WORKLOADS: &[(&str, &str, &str)] = &[
    ("api", "service", "api"),
    ("canary", "service", "canary"),
    ("loadgen", "loadgen", "loadgen"),
];

fn seconds(v: &Yaml) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v:?} is not a whole number of seconds"))
}

#[test]
fn every_workload_runs_the_image_compose_builds_for_that_service() {
    let objects = app_objects();
    for (workload, name, service) in WORKLOADS {
        let image = container(deployment(&objects, workload), name)["image"]
            .as_str()
            .expect("an image")
            .to_string();
        let compose_image = kube::compose_service(service)["image"]
            .as_str()
            .expect("compose names the image")
            .to_string();
        assert_eq!(image, compose_image, "{workload}");
    }
}

#[test]
fn every_setting_compose_gives_a_service_has_the_same_value_on_kubernetes() {
    let objects = app_objects();
    // Compose-only on purpose: the console address (loopback on Kubernetes, see the
    // console test). GRAFANA_URL is the same: the documented port-forward uses port 3000.
    let different = ["TOKIO_CONSOLE_BIND"];
    for (workload, name, service) in WORKLOADS {
        let c = container(deployment(&objects, workload), name);
        let compose_env = kube::compose_env(service);
        assert!(
            !compose_env.is_empty(),
            "compose sets {service}'s environment"
        );
        for (key, value) in compose_env {
            if different.contains(&key.as_str()) {
                continue;
            }
            assert_eq!(
                env_value(c, &key).as_deref(),
                Some(value.as_str()),
                "{workload}: {key} as in docker-compose.yml"
            );
        }
    }
}

#[test]
fn the_service_pods_drain_within_their_grace_period_and_probe_healthz_on_the_http_port() {
    let objects = app_objects();
    for workload in ["api", "canary"] {
        let d = deployment(&objects, workload);
        let c = container(d, "service");
        let shutdown: u64 = env_value(c, "SHUTDOWN_TIMEOUT_S")
            .expect("SHUTDOWN_TIMEOUT_S set")
            .parse()
            .expect("a number");
        let pre_stop = seconds(&c["lifecycle"]["preStop"]["sleep"]["seconds"]);
        let grace = seconds(&d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]);
        assert!(
            grace > pre_stop + shutdown,
            "{workload}: grace {grace} s must cover preStop {pre_stop} s + shutdown {shutdown} s"
        );

        let http = c["ports"]
            .as_sequence()
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["containerPort"].as_u64() == Some(8080))
            })
            .unwrap_or_else(|| panic!("{workload} declares port 8080"));
        let port_name = http["name"].as_str().expect("a named port");
        for probe in ["readinessProbe", "livenessProbe"] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some("/healthz"), "{workload} {probe}");
            assert_eq!(get["port"].as_str(), Some(port_name), "{workload} {probe}");
        }
        // Liveness gives up far later than readiness: a blocked worker must not restart the pod.
        let budget = |p: &str| seconds(&c[p]["periodSeconds"]) * seconds(&c[p]["failureThreshold"]);
        assert!(
            budget("livenessProbe") >= 4 * budget("readinessProbe"),
            "{workload}: liveness must be more tolerant than readiness"
        );
        // No CPU limit: CFS throttling would add the tail latency the lab studies.
        assert!(
            c["resources"]["limits"]["cpu"].is_null(),
            "{workload} has a CPU limit"
        );
    }
}

#[test]
fn the_console_is_reachable_only_through_port_forward() {
    let objects = app_objects();
    let canary = container(deployment(&objects, "canary"), "service");
    let bind = env_value(canary, "TOKIO_CONSOLE_BIND").expect("TOKIO_CONSOLE_BIND set");
    assert!(bind.starts_with("127.0.0.1:"), "console bound to {bind}");
    let console_port: u64 = bind
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    for o in &objects {
        if o["kind"] == "Service" {
            let kind = o["spec"]["type"].as_str().unwrap_or("ClusterIP");
            assert_eq!(kind, "ClusterIP", "{:?} is {kind}", o["metadata"]["name"]);
            for p in o["spec"]["ports"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
            {
                assert_ne!(
                    p["port"].as_u64(),
                    Some(console_port),
                    "a Service exposes the console"
                );
                assert_ne!(p["targetPort"].as_u64(), Some(console_port));
            }
        }
    }
    let declared = canary["ports"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .iter()
        .any(|p| p["containerPort"].as_u64() == Some(console_port));
    assert!(
        !declared,
        "the console port is not declared on the container"
    );
}

#[test]
fn loadgen_targets_headless_services_that_select_the_fleet_and_the_canary() {
    let objects = app_objects();
    let loadgen = container(deployment(&objects, "loadgen"), "loadgen");
    let targets = env_value(loadgen, "LOADGEN_TARGETS").expect("targets");
    let compose_targets = kube::compose_env("loadgen")
        .into_iter()
        .find(|(k, _)| k == "LOADGEN_TARGETS")
        .map(|(_, v)| v)
        .expect("compose's targets");
    assert_eq!(targets, compose_targets, "the same names as in compose");
    for name in ["api", "canary"] {
        assert!(targets.contains(&format!("http://{name}:8080")));
        let svc = kube::object(&objects, "Service", name);
        // Headless: the name resolves to every ready pod, as a compose service name does.
        assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"), "{name}");
        let selector = svc["spec"]["selector"].as_mapping().expect("a selector");
        let pod_labels = &deployment(&objects, name)["spec"]["template"]["metadata"]["labels"];
        for (k, v) in selector {
            assert_eq!(
                &pod_labels[k.as_str().expect("key")],
                v,
                "{name}'s selector"
            );
        }
        assert!(svc["spec"]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .any(|p| p["port"].as_u64() == Some(8080)));
    }
}

#[test]
fn the_fleet_has_a_disruption_budget_and_the_single_canary_none() {
    let objects = app_objects();
    let budgets: Vec<&Yaml> = objects
        .iter()
        .filter(|o| o["kind"] == "PodDisruptionBudget")
        .collect();
    assert_eq!(budgets.len(), 1, "one budget, for the fleet");
    let pdb = budgets[0];
    let api = deployment(&objects, "api");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        api["spec"]["selector"]["matchLabels"]
    );
    let replicas = api["spec"]["replicas"].as_u64().expect("replicas");
    let compose_replicas = kube::compose_default(
        kube::compose_service("api")["deploy"]["replicas"]
            .as_str()
            .expect("replicas"),
    );
    assert_eq!(
        replicas.to_string(),
        compose_replicas,
        "API_REPLICAS's default"
    );
    assert!(pdb["spec"]["maxUnavailable"]
        .as_u64()
        .is_some_and(|m| m >= 1 && m < replicas));
    assert_eq!(
        deployment(&objects, "canary")["spec"]["replicas"].as_u64(),
        Some(1)
    );
}

#[test]
fn every_app_container_runs_as_the_image_user_without_privileges_on_a_read_only_root() {
    let objects = app_objects();
    let dockerfile = repo::read("deploy/Dockerfile");
    assert!(dockerfile.contains("USER 10001:10001"), "the images' user");
    for (workload, name, _) in WORKLOADS {
        let d = deployment(&objects, workload);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{workload}"
        );
        assert_eq!(
            pod["securityContext"]["runAsUser"].as_u64(),
            Some(10001),
            "{workload}"
        );
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"].as_str(),
            Some("RuntimeDefault")
        );
        assert_eq!(
            pod["automountServiceAccountToken"].as_bool(),
            Some(false),
            "{workload}"
        );
        let sc = &container(d, name)["securityContext"];
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{workload}"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{workload}"
        );
        assert_eq!(
            sc["capabilities"]["drop"][0].as_str(),
            Some("ALL"),
            "{workload}"
        );
        assert!(
            sc["capabilities"]["add"].is_null(),
            "{workload} adds capabilities"
        );
    }
    let namespace = kube::object(&objects, "Namespace", "taillab");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
        Some("restricted")
    );
}

#[test]
fn the_profiler_shares_the_canary_pod_with_exactly_the_capabilities_compose_grants() {
    let patch = &kube::documents(kube::PROFILER_PATCH)[0];
    assert_eq!(patch["kind"].as_str(), Some("Deployment"));
    assert_eq!(patch["metadata"]["name"].as_str(), Some("canary"));
    let pod = &patch["spec"]["template"]["spec"];
    assert_eq!(pod["shareProcessNamespace"].as_bool(), Some(true));
    let profiler = container(patch, "profiler");
    let compose = kube::compose_service("profiler");
    assert_eq!(profiler["image"], compose["image"]);
    assert_eq!(
        profiler["securityContext"]["capabilities"]["add"],
        compose["cap_add"]
    );
    assert!(
        profiler["securityContext"]["privileged"].as_bool() != Some(true),
        "not privileged"
    );
    // Compose's tunables, at their defaults.
    for (key, value) in kube::compose_env("profiler") {
        assert_eq!(
            env_value(profiler, &key).as_deref(),
            Some(value.as_str()),
            "{key}"
        );
    }
    // The namespace admits it: "baseline" and "restricted" forbid SYS_ADMIN.
    let overlay = repo::read(kube::PROFILED);
    assert!(overlay.contains("pod-security.kubernetes.io/enforce: privileged"));
    assert!(overlay.contains("- ../app"));
}
