//! The Kubernetes port of the lab (`deploy/kubernetes/`) against the compose lab: the same
//! label contract and pipeline text, the same images and settings, and the chart rules that
//! `helm` would enforce, checked without a cluster or the charts. Kubernetes API schemas and
//! the Kustomize build are deploy/ci/validate-kubernetes.sh's part.
//!
//! The Alloy reader and the pipeline model are the library's (`labcheck::alloy`,
//! `labcheck::pipeline`), shared with the log stack's checks so both suites read configs the
//! same way.

mod charts;
mod docs;
mod kube;
mod manifests;
mod pod_logs;
