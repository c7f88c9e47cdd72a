use test_support::fresh_id;

use crate::helpers::{header, raw_get, spawn_app};

/// A config directory with one file, beside a secret the traversal attempts aim at.
fn config_tree() -> (tempfile::TempDir, String) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("conf")).unwrap();
    std::fs::write(root.path().join("conf/app.toml"), "answer = 42\n").unwrap();
    std::fs::write(root.path().join("secret"), "TOP-SECRET\n").unwrap();
    let conf = root.path().join("conf").to_str().unwrap().to_owned();
    (root, conf)
}

#[tokio::test]
async fn config_sync_returns_400_for_every_traversal_form_and_opens_no_file() {
    let (root, conf) = config_tree();
    let app = spawn_app(&[("CONFIG_DIR", &conf), ("SLOW_DISK_MS", "1")]).await;
    let absolute = format!("{}/secret", root.path().display());
    let long = "a".repeat(129);
    let attempts = [
        "..",
        "../secret",
        "..%2fsecret",
        "..%2Fsecret",
        "%2e%2e%2fsecret",
        "%2e%2e/secret",
        "%2fetc%2fpasswd",
        absolute.as_str(),
        "a%00b",
        "sub/app.toml",
        "..%5csecret",
        ".%2e/secret",
        long.as_str(),
        "app.toml%0a",
        "",
    ];
    for mode in ["sync", "async"] {
        for attempt in attempts {
            let id = fresh_id("traversal");
            let path = format!("/config/{mode}/{attempt}");
            let (status, response) =
                app.raw_request(&raw_get(&path, &format!("x-request-id: {id}\r\n")));
            assert_eq!(status, 400, "{path} -> {response}");
            assert_eq!(
                header(&response, "content-type"),
                Some("application/json"),
                "{path}"
            );
            assert!(
                response.contains(r#"{"error":"invalid config name"#),
                "{path} -> {response}"
            );
            assert!(!response.contains("TOP-SECRET"), "{path} leaked the secret");
            app.wait_for_event(&id, "request finished").await;
            let opened = app
                .lines_of(&id)
                .iter()
                .any(|l| l.message() == Some("loading config"));
            assert!(!opened, "{path} reached the file read");
        }
    }
}

#[tokio::test]
async fn config_reads_serve_the_file_and_404_when_missing() {
    let (_root, conf) = config_tree();
    let app = spawn_app(&[("CONFIG_DIR", &conf), ("SLOW_DISK_MS", "1")]).await;
    for mode in ["sync", "async"] {
        let ok = app.get(&format!("/config/{mode}/app.toml")).await;
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.unwrap(), "answer = 42\n");
        let missing = app.get(&format!("/config/{mode}/nothing.toml")).await;
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = missing.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("nothing.toml"));
    }
}

#[tokio::test]
async fn the_default_config_dir_ships_a_sample_file() {
    let app = spawn_app(&[("SLOW_DISK_MS", "1")]).await;
    let response = app.get("/config/sync/app.toml").await;
    assert_eq!(response.status(), 200);
    assert!(!response.text().await.unwrap().is_empty());
}
