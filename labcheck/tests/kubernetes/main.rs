//! The Kubernetes port of the lab (`deploy/kubernetes/`) against the compose lab: the same
//! label contract and pipeline text, the same images and settings, and the chart rules that
//! `helm` would enforce, checked without a cluster or the charts. Kubernetes API schemas and
//! the Kustomize build are deploy/ci/validate-kubernetes.sh's part.
//!
//! The Alloy reader and the pipeline model are the log stack's own (tests/logstack), included
//! by path so both suites read configs the same way.

#[path = "../logstack/alloy.rs"]
mod alloy;
#[path = "../logstack/pipeline.rs"]
#[allow(dead_code)]
mod pipeline;
#[path = "../logstack/support.rs"]
#[allow(dead_code)]
mod support;

mod charts;
mod docs;
mod kube;
mod manifests;
mod pod_logs;
