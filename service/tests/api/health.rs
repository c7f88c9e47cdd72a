use crate::helpers::{refused_start, spawn_app};

#[tokio::test]
async fn healthz_reports_status_version_flavor_and_instance() {
    let app = spawn_app(&[("INSTANCE", "api-7")]).await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["instance"], "api-7");
    let flavor = if cfg!(feature = "console") {
        "canary"
    } else {
        "release"
    };
    assert_eq!(body["flavor"], flavor);
}

#[tokio::test]
async fn unknown_routes_and_bad_path_parameters_get_json_4xx() {
    let app = spawn_app(&[]).await;
    for (path, status) in [
        ("/nope", 404),
        ("/api/orders/not-a-number", 400),
        ("/cpu/inline?ms=2001", 400),
        ("/cpu/offload?ms=-1", 400),
        ("/lock/std?hold_ms=99999", 400),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty() && !e.contains('\n')),
            "{path}: {body}"
        );
    }
}

#[test]
fn bad_settings_exit_2_with_one_line() {
    for (key, value) in [
        ("WORKERS", "zero"),
        ("SLOW_DISK_MS", "3s"),
        ("LISTEN_ADDR", "nowhere"),
        ("LOG_FORMAT", "xml"),
        ("RUST_LOG", "info,[=bad"),
    ] {
        let refusal = refused_start(&[(key, value)], &format!("{key}={value}"));
        assert!(refusal.stdout.is_empty(), "{key}={value} wrote to stdout");
    }
}

#[test]
fn an_address_in_use_exits_2_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = refused_start(&[("LISTEN_ADDR", &addr)], "address in use").stderr;
    assert!(stderr.contains("cannot listen"), "{stderr}");
}
