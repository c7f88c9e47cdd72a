//! Route mix, multi-address expansion, per-instance rows, request-id echo, and the links to
//! the logs.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use crate::server::{config, discover, spawn, spawn_on, Behaviour, TestServer};
use loadgen::{
    links,
    run::{run_round, Load},
    scenario::{Mix, Route},
    target::ResolveOverride,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_weights_hold_within_3_percent() {
    let server = spawn(Behaviour::default()).await;
    let mut cfg = config(
        &[server.url()],
        Load::Closed { connections: 4 },
        Duration::from_millis(1500),
    );
    cfg.scenario.mix = "orders=60,config_sync=25,cpu_inline=15"
        .parse::<Mix>()
        .unwrap();
    let endpoints = discover(&cfg).await;
    let report = run_round(&cfg, &endpoints, 1).await;

    let total = report.total.requests as f64;
    assert!(total >= 2000.0, "only {total} requests");
    let mut by_prefix: HashMap<&str, u64> = HashMap::new();
    for s in server.seen() {
        let key = ["/api/orders/", "/config/sync/app.toml", "/cpu/inline?ms=20"]
            .into_iter()
            .find(|p| s.path.starts_with(p))
            .unwrap_or("other");
        *by_prefix.entry(key).or_default() += 1;
    }
    for (route, prefix, weight) in [
        (Route::Orders, "/api/orders/", 0.60),
        (Route::ConfigSync, "/config/sync/app.toml", 0.25),
        (Route::CpuInline, "/cpu/inline?ms=20", 0.15),
    ] {
        let row = report.routes.iter().find(|r| r.route == route).unwrap();
        let share = row.stats.requests as f64 / total;
        assert!(
            (share - weight).abs() <= 0.03,
            "{route}: {share} vs {weight}"
        );
        let served = by_prefix[prefix] as f64 / server.requests() as f64;
        assert!(
            (served - weight).abs() <= 0.03,
            "{prefix}: {served} vs {weight}"
        );
    }
    assert_eq!(by_prefix.get("other"), None);
    assert_eq!(report.total.id_mismatches, 0);
    // Closed loop has no plan: no requested rate, no late sends.
    assert_eq!(report.total.requested_rate, None);
    assert_eq!(report.total.late_sends, 0);
}

/// Binds 127.0.0.1:P and 127.0.0.2:P for the same P, retrying if P is taken on .2.
async fn twin_servers() -> (TestServer, TestServer) {
    let b = |name: &str, flavor: &str| Behaviour {
        instance: Some((name.to_owned(), flavor.to_owned())),
        ..Behaviour::default()
    };
    for _ in 0..20 {
        let first = spawn(b("api-1", "release")).await;
        let second_ip: IpAddr = "127.0.0.2".parse().unwrap();
        if let Ok(second) = spawn_on(second_ip, first.addr.port(), b("api-2", "canary")).await {
            return (first, second);
        }
    }
    panic!("could not bind the same port on 127.0.0.1 and 127.0.0.2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_two_addresses_gets_a_row_per_instance_and_keeps_its_host_header() {
    let (one, two) = twin_servers().await;
    let port = one.addr.port();
    let mut cfg = config(
        &[format!("http://lab.test:{port}")],
        Load::Open {
            rate: 200.0,
            max_in_flight: 16,
        },
        Duration::from_secs(1),
    );
    cfg.resolve = vec!["lab.test=127.0.0.1,127.0.0.2"
        .parse::<ResolveOverride>()
        .unwrap()];
    let endpoints = discover(&cfg).await;
    let report = run_round(&cfg, &endpoints, 1).await;

    let rows: Vec<_> = report
        .instances
        .iter()
        .map(|i| {
            (
                i.instance.as_str(),
                i.flavor.as_deref(),
                i.address.clone(),
                i.stats.requests,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("api-1", Some("release"), format!("127.0.0.1:{port}"), 100),
            ("api-2", Some("canary"), format!("127.0.0.2:{port}"), 100),
        ]
    );
    assert_eq!((one.requests(), two.requests()), (100, 100));
    for s in one.seen().into_iter().chain(two.seen()) {
        assert_eq!(s.host, format!("lab.test:{port}"));
    }
    // Each instance row carries its share of the requested rate.
    assert_eq!(report.instances[0].stats.requested_rate, Some(100.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_healthz_json_is_labelled_by_its_address() {
    let server = spawn(Behaviour::default()).await;
    let cfg = config(
        &[server.url()],
        Load::Open {
            rate: 50.0,
            max_in_flight: 4,
        },
        Duration::from_millis(200),
    );
    let endpoints = discover(&cfg).await;
    assert_eq!(endpoints[0].instance, server.addr.to_string());
    assert_eq!(endpoints[0].flavor, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_request_id_echoes_are_counted_as_mismatches() {
    let server = spawn(Behaviour {
        no_echo: true,
        ..Behaviour::default()
    })
    .await;
    let cfg = config(
        &[server.url()],
        Load::Open {
            rate: 100.0,
            max_in_flight: 4,
        },
        Duration::from_millis(300),
    );
    let endpoints = discover(&cfg).await;
    let report = run_round(&cfg, &endpoints, 1).await;
    assert_eq!(report.total.requests, 30);
    assert_eq!(report.total.id_mismatches, 30);
    // Every id the server saw is a UUID v7.
    for s in server.seen() {
        let id = uuid::Uuid::parse_str(&s.request_id).unwrap();
        assert_eq!(id.get_version_num(), 7);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore_links_decode_to_the_shared_logql_query() {
    let server = spawn(Behaviour::default()).await;
    let mut cfg = config(
        &[server.url()],
        Load::Open {
            rate: 100.0,
            max_in_flight: 4,
        },
        Duration::from_millis(200),
    );
    cfg.links.grafana_url = "http://grafana.example:3000/sub/".to_owned();
    cfg.links.datasource_uid = "my-loki".to_owned();
    let endpoints = discover(&cfg).await;
    let report = run_round(&cfg, &endpoints, 1).await;

    let shared: serde_json::Value =
        serde_json::from_str(include_str!("../../../grafana/queries.json")).unwrap();
    let template = shared["request_by_id"].as_str().unwrap();
    assert!(!report.slowest.is_empty());
    for slow in &report.slowest {
        let expected = template.replace("${request_id}", &slow.request_id);
        assert_eq!(slow.logql, expected);
        assert_eq!(links::logql_for(&slow.request_id), expected);

        let url = url::Url::parse(&slow.explore_url).unwrap();
        assert_eq!(url.path(), "/sub/explore");
        assert_eq!(url.host_str(), Some("grafana.example"));
        let params: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(params["schemaVersion"], "1");
        let panes: serde_json::Value = serde_json::from_str(&params["panes"]).unwrap();
        let pane = panes.as_object().unwrap().values().next().unwrap();
        assert_eq!(pane["datasource"], "my-loki");
        assert_eq!(pane["queries"][0]["expr"], expected.as_str());
        assert_eq!(pane["queries"][0]["datasource"]["uid"], "my-loki");
        let from: u128 = pane["range"]["from"].as_str().unwrap().parse().unwrap();
        let to: u128 = pane["range"]["to"].as_str().unwrap().parse().unwrap();
        assert_eq!(to - from, 2 * links::WINDOW.as_millis());
    }
}
