//! Restart restore, health, ready, metrics, trace ids and the OpenAPI document.

use super::*;

#[tokio::test]
async fn subscriptions_survive_a_restart_on_the_same_database() {
    let db = TestDatabase::postgres().await;
    let app = spawn_app(with_credentials(&db.url)).await;
    post(
        &app,
        json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "keeper"}),
    )
    .await;
    post(
        &app,
        json!({"channel_type": "balance", "requesting_service": "keeper"}),
    )
    .await;
    let (_, gone) = post(
        &app,
        json!({"channel_type": "ticker", "symbol": "XRPUSDT", "requesting_service": "keeper"}),
    )
    .await;
    delete(
        &app,
        &format!("/api/v1/subscriptions/{}", gone["id"].as_str().unwrap()),
    )
    .await;
    app.registry.set_status(&trades_key(), TopicStatus::Active);
    app.shutdown().await.expect("clean stop");

    let app = spawn_app(with_credentials(&db.url)).await;

    assert!(
        app.registry.is_held_by(&trades_key(), "keeper"),
        "restored upstream"
    );
    assert!(
        app.registry
            .is_held_by(&TopicKey::new(Endpoint::Private, "wallet"), "keeper")
    );
    assert_eq!(
        app.registry.snapshot().len(),
        2,
        "the cancelled one stays cancelled"
    );
    let (_, active) = get(&app, "/api/v1/subscriptions?is_active=true").await;
    let active = active.as_array().unwrap();
    assert_eq!(active.len(), 2);
    assert!(
        active.iter().all(|s| s["status"] == "pending"),
        "resubscribing after restart"
    );
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

#[tokio::test]
async fn health_ready_metrics_and_trace_ids_need_no_key() {
    let dir = tempfile::tempdir().unwrap();
    // A silent Bybit: no failed connection attempt marks the topic pending again after the
    // test set it active (against the unreachable mainnet URL, a failed DNS lookup could).
    let app = spawn_app(
        TestConfig::default()
            .var("DATABASE_URL", sqlite_url(dir.path()))
            .var("BYBIT_WS_URL", silent_bybit_url()),
    )
    .await;
    let plain = Client::new();

    let resp = plain
        .get(format!("{}/health", app.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let trace = resp.headers()["x-trace-id"].to_str().unwrap().to_owned();
    assert!(trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()));
    let h: Value = resp.json().await.unwrap();
    for field in [
        "status",
        "websocket_connected",
        "active_subscriptions",
        "last_heartbeat_at",
        "version",
    ] {
        assert!(h.get(field).is_some(), "{field} in {h}");
    }
    assert_eq!(h["components"]["database"], "up");
    assert_eq!(h["components"]["rabbitmq"], "disabled");

    let ready = plain
        .get(format!("{}/ready", app.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "nothing desired, DB up");
    post(
        &app,
        json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "r"}),
    )
    .await;
    let ready = plain
        .get(format!("{}/ready", app.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("publicTrade.BTCUSDT"),
        "{body}"
    );
    let degraded: Value = plain
        .get(format!("{}/health", app.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        degraded["status"], "degraded",
        "a wanted topic with no connection yet"
    );
    app.registry.set_status(&trades_key(), TopicStatus::Active);
    let ready = plain
        .get(format!("{}/ready", app.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let docs = plain
        .get(format!("{}/docs", app.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    let metrics = plain
        .get(format!("{}/metrics", app.http()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ws_gateway_http_requests_total")
                && l.contains(r#"route="/api/v1/subscriptions""#)
                && l.contains(r#"status="201""#)),
        "requests counted by route template"
    );
    app.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn committed_openapi_json_is_valid_openapi_3_and_matches_the_served_spec() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;
    let served: Value = Client::new()
        .get(format!("{}/openapi.json", app.http()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();

    assert_eq!(
        committed, served,
        "openapi.json is stale: run `cargo run -- --export-openapi openapi.json`"
    );
    assert!(committed["openapi"].as_str().unwrap().starts_with("3."));
    let paths = committed["paths"].as_object().unwrap();
    for p in [
        "/api/v1/subscriptions",
        "/api/v1/subscriptions/{id}",
        "/api/v1/subscriptions/by-service/{service_name}",
        "/api/v1/balances",
        "/api/v1/balances/history",
        "/health",
        "/ready",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    let create = &paths["/api/v1/subscriptions"]["post"]["responses"];
    for code in ["200", "201", "400", "401"] {
        assert!(create.get(code).is_some(), "POST documents {code}");
    }
    app.shutdown().await.expect("clean stop");
}
