use test_support::fresh_id;

use crate::helpers::{header, raw_get, spawn_app};

#[tokio::test]
async fn a_valid_client_id_is_echoed_and_names_every_line_of_the_request() {
    let app = spawn_app(&[("SLOW_DISK_MS", "1")]).await;
    let id = fresh_id("client.id:1");
    let response = app.get_with_id("/config/sync/app.toml", &id).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], id.as_str());
    app.wait_for_line(|l| l.message() == Some("request finished") && l.request_id() == Some(&id))
        .await;
    let messages: Vec<_> = app
        .lines_of(&id)
        .iter()
        .filter_map(|l| l.message().map(str::to_owned))
        .collect();
    for expected in ["loading config", "loaded config", "request finished"] {
        assert!(
            messages.iter().any(|m| m == expected),
            "no {expected:?} line for {id}: {messages:?}"
        );
    }
}

#[tokio::test]
async fn a_generated_id_matches_the_logged_one() {
    let app = spawn_app(&[]).await;
    let response = app.get("/api/orders/42").await;
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    let access = app
        .wait_for_event(&id, "request finished")
        .await
        .json
        .unwrap();
    assert_eq!(access["fields"]["route"], "/api/orders/{id}");
    assert_eq!(access["fields"]["status"], 200);
    assert_eq!(access["fields"]["method"], "GET");
    assert!(access["fields"]["latency_ms"].as_f64().is_some());
}

#[tokio::test]
async fn unsafe_client_ids_are_replaced_and_never_logged() {
    let app = spawn_app(&[]).await;
    let ten_kb = "k".repeat(10 * 1024);
    let bad_ids = [
        "has space",
        "quote\"inside",
        "semi;colon",
        "x".repeat(65).leak(),
        ten_kb.as_str(),
        "caf\u{e9}",
    ];
    for bad in bad_ids {
        let (status, response) =
            app.raw_request(&raw_get("/healthz", &format!("x-request-id: {bad}\r\n")));
        assert_eq!(status, 200, "{bad:.40}");
        let echoed = header(&response, "x-request-id").expect("no x-request-id");
        assert_ne!(echoed, bad);
        assert_eq!(uuid::Uuid::parse_str(echoed).unwrap().get_version_num(), 7);
        app.wait_for_event(echoed, "request finished").await;
        assert!(
            !app.dump().contains(bad),
            "the bad id {bad:.40} reached the log"
        );
    }
}
