//! docs/scale-out.md stays true to the files it tells a user to run: every path it names
//! exists, and it installs each chart at the version its values file pins.

use std::collections::BTreeMap;

use crate::kube;
use labcheck::repo;

const DOC: &str = "docs/scale-out.md";

#[test]
fn every_repository_path_the_guide_names_exists() {
    let doc = repo::read(DOC);
    // The lab's folders; `grafana/alloy` is a chart and `deploy/canary` a kubectl name, not paths.
    let path = regex::Regex::new(
        r"\b(?:deploy/(?:kubernetes|ci|alloy|loki|profiler)|docs/|labcheck/|grafana/(?:provisioning|dashboards|queries))[A-Za-z0-9_./-]*[A-Za-z0-9_]",
    )
    .expect("regex");
    let mut seen = 0;
    for m in path.find_iter(&doc) {
        seen += 1;
        assert!(
            repo::root().join(m.as_str()).exists(),
            "{DOC} names {}, which does not exist",
            m.as_str()
        );
    }
    assert!(
        seen >= 10,
        "the guide names the files it uses ({seen} found)"
    );
}

/// `helm install <release> <repo>/<chart> --version <v>` as (chart, version), from a text.
fn helm_installs(text: &str) -> BTreeMap<String, String> {
    let re = regex::Regex::new(r"helm install \S+ [\w-]+/([\w-]+) --version (\S+)").expect("regex");
    re.captures_iter(text)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

#[test]
fn the_guide_installs_each_chart_at_the_version_its_values_file_pins() {
    let doc = helm_installs(&repo::read(DOC));
    for (chart, values) in [
        ("loki", kube::LOKI_VALUES),
        ("alloy", kube::ALLOY_VALUES),
        ("grafana", kube::GRAFANA_VALUES),
    ] {
        let pinned = helm_installs(&repo::read(values));
        let version = pinned
            .get(chart)
            .unwrap_or_else(|| panic!("{values} shows no `helm install` of {chart}"));
        assert_eq!(
            doc.get(chart),
            Some(version),
            "{DOC} installs {chart} at another version"
        );
    }
}
