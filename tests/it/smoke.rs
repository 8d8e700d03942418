//! The skeleton boots: health answers, a stop is clean.

use crate::helpers::{TestConfig, TestDatabase, spawn_app};

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
        TestConfig::default().var("DATABASE_URL", crate::helpers::sqlite_url(dir.path())),
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
