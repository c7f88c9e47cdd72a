//! The Helm values (`deploy/kubernetes/logstack/`): the images compose pins, the Loki chart's
//! own render-time rules (templates/validate.yaml, which cannot run here without helm), the
//! Loki settings the compose lab depends on, and Grafana provisioned from the same files.

use serde_yaml::Value as Yaml;

use crate::kube::{self, merged_values};
use labcheck::repo;

/// The tag docker-compose.yml pins for `grafana/<name>`.
fn compose_tag(name: &str) -> String {
    let image = kube::compose_service(name)["image"]
        .as_str()
        .unwrap_or_else(|| panic!("compose's {name} has an image"))
        .to_string();
    image
        .strip_prefix(&format!("grafana/{name}:"))
        .unwrap_or_else(|| panic!("compose's {name} image {image} is not grafana/{name}:<tag>"))
        .to_string()
}

#[test]
fn every_chart_runs_the_image_tag_compose_pins() {
    let loki = repo::yaml(kube::LOKI_VALUES);
    assert_eq!(
        loki["loki"]["image"]["tag"].as_str(),
        Some(compose_tag("loki").as_str())
    );
    let alloy = repo::yaml(kube::ALLOY_VALUES);
    assert_eq!(
        alloy["image"]["tag"].as_str(),
        Some(compose_tag("alloy").as_str())
    );
    let grafana = repo::yaml(kube::GRAFANA_VALUES);
    assert_eq!(
        grafana["image"]["tag"].as_str(),
        Some(compose_tag("grafana").as_str())
    );
}

/// The Loki values variants a user installs: monolithic on a volume, and with object storage.
fn loki_variants() -> Vec<(&'static str, Yaml)> {
    vec![
        ("loki-values.yaml", merged_values(&[kube::LOKI_VALUES])),
        (
            "loki-values.yaml + loki-values-s3.yaml",
            merged_values(&[kube::LOKI_VALUES, kube::LOKI_S3_VALUES]),
        ),
    ]
}

fn replicas(values: &Yaml, component: &str) -> u64 {
    values[component]["replicas"].as_u64().unwrap_or_else(|| {
        panic!("{component}.replicas is unset (the chart's default is not what the lab wants)")
    })
}

const OBJECT_STORES: &[&str] = &["s3", "gcs", "azure", "swift", "alibabacloud", "cos", "bos"];

/// The checks of the chart's templates/validate.yaml (chart 18.11.0) that these values reach.
#[test]
fn the_loki_values_pass_the_charts_own_render_checks() {
    for (name, v) in loki_variants() {
        assert_eq!(v["deploymentMode"].as_str(), Some("Monolithic"), "{name}");
        let schema = v["loki"]["schemaConfig"]["configs"].as_sequence();
        assert!(
            schema.is_some_and(|s| !s.is_empty())
                || v["loki"]["useTestSchema"].as_bool() == Some(true),
            "{name}: the chart refuses to render without a schema"
        );
        let storage = v["loki"]["storage"]["type"].as_str().unwrap_or("s3");
        let object_storage = OBJECT_STORES.contains(&storage);
        let single = replicas(&v, "singleBinary");
        assert!(single >= 1, "{name}: no Loki at all");
        assert!(
            object_storage || single <= 1,
            "{name}: more than one Monolithic replica needs object storage"
        );
        for scalable in ["read", "write", "backend"] {
            assert_eq!(
                replicas(&v, scalable),
                0,
                "{name}: {scalable} beside Monolithic"
            );
        }
        assert_ne!(
            v["minio"]["enabled"].as_bool(),
            Some(true),
            "{name}: the deprecated MinIO"
        );
        let rf = v["loki"]["commonConfig"]["replication_factor"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: replication_factor unset (chart default 3)"));
        assert!(
            rf <= single,
            "{name}: replication factor {rf} over {single} replicas"
        );
        if object_storage {
            for bucket in ["chunks", "ruler"] {
                assert!(
                    v["loki"]["storage"]["bucketNames"][bucket]
                        .as_str()
                        .is_some(),
                    "{name}: object storage needs bucketNames.{bucket}"
                );
            }
        }
        // Every schema period stores to the configured storage.
        for period in schema.cloned().unwrap_or_default() {
            assert_eq!(
                period["object_store"].as_str(),
                Some(storage),
                "{name}: {period:?}"
            );
        }
        assert_eq!(
            v["loki"]["compactor"]["delete_request_store"].as_str(),
            Some(storage),
            "{name}: retention deletes where the chunks are"
        );
    }
}

#[test]
fn the_loki_values_keep_what_the_compose_lab_depends_on() {
    let compose = repo::yaml(repo::LOKI_CONFIG);
    let compose_schema = compose["schema_config"]["configs"]
        .as_sequence()
        .and_then(|s| s.last())
        .expect("compose's schema")
        .clone();
    for (name, v) in loki_variants() {
        let loki = &v["loki"];
        assert_eq!(
            loki["auth_enabled"], compose["auth_enabled"],
            "{name}: one tenant"
        );
        let schema = loki["schemaConfig"]["configs"]
            .as_sequence()
            .and_then(|s| s.last())
            .expect("a schema");
        for key in ["store", "schema", "index"] {
            assert_eq!(schema[key], compose_schema[key], "{name}: schema {key}");
        }
        // `from` as a date either way (compose's YAML leaves it unquoted).
        let from = |v: &Yaml| match v {
            Yaml::String(s) => s.clone(),
            other => serde_yaml::to_string(other)
                .expect("yaml")
                .trim()
                .to_string(),
        };
        assert_eq!(
            from(&schema["from"]),
            from(&compose_schema["from"]),
            "{name}: schema from"
        );
        let limits = &loki["limits_config"];
        let compose_limits = &compose["limits_config"];
        assert_eq!(
            limits["allow_structured_metadata"].as_bool(),
            Some(true),
            "{name}"
        );
        for key in ["ingestion_rate_mb", "ingestion_burst_size_mb"] {
            let (k8s, lab) = (limits[key].as_f64(), compose_limits[key].as_f64());
            assert!(
                k8s.is_some() && k8s >= lab,
                "{name}: {key} {k8s:?} below compose's {lab:?}"
            );
        }
        assert_eq!(
            limits["retention_period"], compose_limits["retention_period"],
            "{name}"
        );
        assert_eq!(
            loki["compactor"]["retention_enabled"].as_bool(),
            Some(true),
            "{name}: retention_period needs the compactor"
        );
        assert_eq!(
            loki["analytics"]["reporting_enabled"].as_bool(),
            Some(false),
            "{name}"
        );
        // The chunks cache's default memory (about 9.6 GiB) keeps small clusters Pending.
        assert_eq!(v["chunksCache"]["enabled"].as_bool(), Some(false), "{name}");
        // Without the gateway, the Service is the release: http://loki:3100, compose's URL.
        assert_eq!(v["gateway"]["enabled"].as_bool(), Some(false), "{name}");
    }
    let header = repo::read(kube::LOKI_VALUES);
    assert!(
        header.contains("helm install loki "),
        "the release is named loki"
    );
}

#[test]
fn alloy_runs_on_every_node_reading_pod_logs_with_positions_that_outlive_the_pod() {
    let v = repo::yaml(kube::ALLOY_VALUES);
    assert_eq!(v["controller"]["type"].as_str(), Some("daemonset"));
    assert_eq!(v["alloy"]["mounts"]["varlog"].as_bool(), Some(true));
    assert_eq!(v["alloy"]["enableReporting"].as_bool(), Some(false));
    let storage = v["alloy"]["storagePath"].as_str().expect("storagePath");
    let mount = v["alloy"]["mounts"]["extra"]
        .as_sequence()
        .and_then(|m| m.iter().find(|m| m["mountPath"].as_str() == Some(storage)))
        .expect("the storage path is mounted");
    let volume_name = mount["name"].as_str().expect("a volume name");
    let volume = v["controller"]["volumes"]["extra"]
        .as_sequence()
        .and_then(|vs| {
            vs.iter()
                .find(|vol| vol["name"].as_str() == Some(volume_name))
        })
        .expect("the mounted volume is declared");
    assert!(
        volume["hostPath"]["path"].as_str().is_some(),
        "positions on the node, not in the pod"
    );
    // The config is assembled by alloy-config.sh and passed with --set-file.
    let header = repo::read(kube::ALLOY_VALUES);
    assert!(header.contains("--set-file alloy.configMap.content="));
    assert!(header.contains("alloy-config.sh"));
}

/// `kubectl create configmap NAME --from-file=DIR/` lines in the Grafana values' header.
fn documented_configmaps() -> Vec<(String, String)> {
    let re = regex::Regex::new(r"create configmap (\S+) --from-file=(\S+)/").expect("regex");
    re.captures_iter(&repo::read(kube::GRAFANA_VALUES))
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

#[test]
fn grafana_mounts_the_lab_folders_where_compose_does_with_compose_settings() {
    let v = repo::yaml(kube::GRAFANA_VALUES);
    let compose = kube::compose_service("grafana");
    // The same GF_* settings, value for value.
    let env = v["env"].as_mapping().expect("env");
    let compose_env = compose["environment"].as_mapping().expect("compose env");
    assert_eq!(
        env, compose_env,
        "grafana-values.yaml env vs docker-compose.yml"
    );

    // Compose's read-only folder mounts: ./grafana/... -> target.
    let compose_mounts: Vec<(String, String)> = compose["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|m| {
            let parts: Vec<&str> = m.as_str()?.split(':').collect();
            let dir = parts[0].strip_prefix("./")?;
            Some((dir.to_string(), parts[1].to_string()))
        })
        .collect();
    let configmaps = documented_configmaps();
    let mounts = v["extraConfigmapMounts"]
        .as_sequence()
        .expect("extraConfigmapMounts");
    assert_eq!(
        mounts.len(),
        configmaps.len(),
        "one mount per documented ConfigMap"
    );
    for (configmap, dir) in &configmaps {
        assert!(
            repo::root().join(dir).is_dir(),
            "{dir} is a folder of the lab"
        );
        let mount = mounts
            .iter()
            .find(|m| m["configMap"].as_str() == Some(configmap))
            .unwrap_or_else(|| panic!("{configmap} is not mounted"));
        let path = mount["mountPath"].as_str().expect("mountPath");
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{configmap}");
        // Where compose puts that folder: mounted directly, or inside a mounted parent.
        let placed = compose_mounts.iter().any(|(cdir, target)| {
            if dir == cdir {
                path == target
            } else {
                dir.strip_prefix(&format!("{cdir}/"))
                    .is_some_and(|rest| path == format!("{target}/{rest}"))
            }
        });
        assert!(
            placed,
            "{dir} is mounted at {path}, not where compose mounts it"
        );
    }
    assert_eq!(v["testFramework"]["enabled"].as_bool(), Some(false));
}
