//! Links from a slow request to its logs: the LogQL query and a Grafana Explore URL.
//!
//! The query text is not written here: it comes from the lab's single source of truth,
//! `grafana/queries.json` (key `request_by_id`, with a `${request_id}` placeholder, plus the
//! Loki `datasource_uid`), compiled in with `include_str!` so the dashboard, the README and
//! these links can never drift apart. The Explore URL uses Grafana's `panes` schema
//! (`/explore?schemaVersion=1&panes=<json>&orgId=1`).

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Deserialize;
use url::Url;

static QUERIES_JSON: &str = include_str!("../../grafana/queries.json");

/// The keys of `grafana/queries.json` that loadgen uses (others are ignored).
#[derive(Debug, Deserialize)]
pub struct Queries {
    pub datasource_uid: String,
    pub request_by_id: String,
    pub watchdog_warnings: String,
}

/// The lab's shared queries, parsed once.
pub fn queries() -> &'static Queries {
    static QUERIES: OnceLock<Queries> = OnceLock::new();
    QUERIES.get_or_init(|| {
        serde_json::from_str(QUERIES_JSON).expect("grafana/queries.json has the documented keys")
    })
}

/// Grafana base URL used when none is configured: the lab publishes Grafana on loopback.
pub const DEFAULT_GRAFANA_URL: &str = "http://127.0.0.1:3000";

/// The LogQL query that finds every log line of one request.
pub fn logql_for(request_id: &str) -> String {
    queries().request_by_id.replace("${request_id}", request_id)
}

/// The LogQL query for the watchdog's warnings (`worker blocked` / `worker stall`) of one
/// instance: a stall has no request id to search by.
pub fn watchdog_logql_for(instance: &str) -> String {
    let escaped = instance.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{} | instance=\"{escaped}\"", queries().watchdog_warnings)
}

/// Where links point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    pub grafana_url: String,
    pub datasource_uid: String,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            grafana_url: DEFAULT_GRAFANA_URL.to_owned(),
            datasource_uid: queries().datasource_uid.clone(),
        }
    }
}

/// How far around a request's start the Explore time range reaches.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

fn epoch_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// An Explore link that runs `query` over ±[`WINDOW`] around `at`.
pub fn explore_url(cfg: &LinkConfig, query: &str, at: SystemTime) -> String {
    let panes = serde_json::json!({
        "loadgen": {
            "datasource": cfg.datasource_uid,
            "queries": [{
                "refId": "A",
                "datasource": { "type": "loki", "uid": cfg.datasource_uid },
                "expr": query,
                "queryType": "range",
                "editorMode": "code",
            }],
            "range": {
                "from": epoch_ms(at - WINDOW).to_string(),
                "to": epoch_ms(at + WINDOW).to_string(),
            },
        }
    });
    let base = cfg.grafana_url.trim_end_matches('/');
    let mut url = Url::parse(&format!("{base}/explore"))
        .unwrap_or_else(|_| Url::parse("http://127.0.0.1:3000/explore").expect("static URL"));
    url.query_pairs_mut()
        .append_pair("schemaVersion", "1")
        .append_pair("panes", &panes.to_string())
        .append_pair("orgId", "1");
    url.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_comes_from_the_shared_file() {
        let q = logql_for("abc-1");
        assert!(q.contains("abc-1") && !q.contains("${request_id}"), "{q}");
        let raw: serde_json::Value = serde_json::from_str(QUERIES_JSON).unwrap();
        let template = raw["request_by_id"].as_str().unwrap();
        assert_eq!(q, template.replace("${request_id}", "abc-1"));
    }
}
