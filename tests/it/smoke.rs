//! The skeleton boots: health answers, a stop is clean.

use crate::support::{TestConfig, TestDatabase, spawn_app};

#[tokio::test]
async fn app_boots_on_postgres_serves_health_and_stops_cleanly() {
    let db = TestDatabase::postgres().await;
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", db.url.clone())).await;

    let body: serde_json::Value = reqwest::get(format!("{}/health", app.http()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(body["components"]["database"], "up");
    assert!(body["version"].is_string());
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

#[tokio::test]
async fn ws_route_is_mounted_beside_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(
        TestConfig::default().var("DATABASE_URL", crate::support::sqlite_url(dir.path())),
    )
    .await;

    let health = reqwest::get(format!("{}/health", app.http()))
        .await
        .unwrap();
    let ws = reqwest::get(format!("{}/ws", app.http())).await.unwrap();

    assert_eq!(health.status(), 200);
    assert_ne!(ws.status(), 404);
    app.shutdown().await.expect("clean stop");
}

#[test]
fn bad_configuration_from_dot_env_stops_startup_with_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "BYBIT_ENVIRONMENT=moon\n").unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ws-gateway"))
        .env_clear()
        .current_dir(dir.path())
        .output()
        .expect("run the binary");

    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("BYBIT_ENVIRONMENT"), "{stderr}");
    assert!(
        !dir.path().join("ws-gateway.db").exists(),
        "nothing started"
    );
}

#[test]
fn an_unknown_key_in_a_named_pipeline_file_is_named_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[source]\nping_intervall = \"1s\"\n",
    )
    .unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ws-gateway"))
        .env_clear()
        .env("WS_GATEWAY_PIPELINE", dir.path().join("p.toml"))
        .current_dir(dir.path())
        .output()
        .expect("run the binary");

    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ping_intervall"));
}
