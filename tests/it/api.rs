//! REST API (spec section 6): the seed quickstart walked with real HTTP on PostgreSQL and on
//! SQLite, every documented error path, restart restore, health/ready, and the OpenAPI file.

use std::{sync::Arc, time::Duration};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use ws_gateway::{
    event::{Category, Endpoint, Event, EventClass},
    source::subscriptions::{TopicKey, TopicStatus},
};

use crate::helpers::{
    TEST_API_KEY, TestApp, TestConfig, TestDatabase, spawn_app, sqlite_url, wait_until,
};

/// A client that sends the test key.
fn client() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", TEST_API_KEY.parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

/// Test settings with Bybit credentials (private channels allowed) and an unreachable Bybit.
fn with_credentials(db_url: &str) -> TestConfig {
    TestConfig::default()
        .var("DATABASE_URL", db_url)
        .var("BYBIT_WS_URL", "ws://127.0.0.1:9")
        .var("BYBIT_REST_URL", "http://127.0.0.1:9")
        .var("BYBIT_API_KEY", "test-key")
        .var("BYBIT_API_SECRET", "test-secret")
}

async fn post(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/api/v1/subscriptions", app.http()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let resp = client()
        .get(format!("{}{path}", app.http()))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

async fn delete(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let resp = client()
        .delete(format!("{}{path}", app.http()))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

fn trades_key() -> TopicKey {
    TopicKey::new(Endpoint::Public(Category::Linear), "publicTrade.BTCUSDT")
}

/// A trades event as the pipeline would broadcast it.
fn trade_event() -> Arc<Event> {
    let data = r#"[{"T":1,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"50000","i":"x"}]"#;
    let prefix = r#"{"topic":"publicTrade.BTCUSDT","data":"#;
    let json = format!("{prefix}{data}}}");
    Arc::new(Event {
        id: uuid::Uuid::now_v7(),
        trace_id: "0".repeat(32),
        class: EventClass::Trades,
        topic: "publicTrade.BTCUSDT".into(),
        endpoint: Endpoint::Public(Category::Linear),
        category: Some(Category::Linear),
        symbol: Some("BTCUSDT".into()),
        kind: Some("snapshot".into()),
        exchange_ts: Some(1),
        received_at: chrono::Utc::now(),
        received_mono: std::time::Instant::now(),
        seq: 1,
        json: json.clone().into(),
        data: prefix.len()..prefix.len() + data.len(),
    })
}

async fn quickstart(app: &TestApp) {
    // Subscribe to trades; the same request again returns the same subscription with 200.
    let trades = json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "test-service"});
    let (status, created) = post(app, trades.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["topic"], "publicTrade.BTCUSDT");
    assert_eq!(created["category"], "linear");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["is_active"], true);
    assert!(created["last_event_at"].is_null());
    assert!(
        created["created_at"].as_str().unwrap().ends_with("+00:00")
            || created["created_at"].as_str().unwrap().ends_with('Z')
    );
    let (status, again) = post(app, trades).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], created["id"]);

    // Balance (private) and an order book of another service.
    let (status, balance) = post(
        app,
        json!({"channel_type": "balance", "requesting_service": "test-service"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{balance}");
    assert_eq!(balance["topic"], "wallet");
    assert!(balance["category"].is_null());
    let (status, book) = post(
        app,
        json!({"channel_type": "orderbook", "symbol": "ETHUSDT", "category": "spot", "depth": 200, "requesting_service": "book-service"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{book}");
    assert_eq!(book["topic"], "orderbook.200.ETHUSDT");

    // The desired set holds each topic once.
    assert!(app.registry.is_held_by(&trades_key(), "test-service"));
    assert!(
        app.registry
            .is_held_by(&TopicKey::new(Endpoint::Private, "wallet"), "test-service")
    );

    // The source reporting an ack shows in the API; events move last_event_at.
    app.registry.set_status(&trades_key(), TopicStatus::Active);
    let id = created["id"].as_str().unwrap().to_owned();
    let active = wait_until(Duration::from_secs(10), || async {
        let (_, s) = get(app, &format!("/api/v1/subscriptions/{id}")).await;
        (s["status"] == "active").then_some(s)
    })
    .await;
    assert!(active.is_some(), "status follows the registry");
    let _ = app.events.send(trade_event());
    let touched = wait_until(Duration::from_secs(10), || async {
        let _ = app.events.send(trade_event());
        let (_, s) = get(app, &format!("/api/v1/subscriptions/{id}")).await;
        s["last_event_at"].is_string().then_some(())
    })
    .await;
    assert!(touched.is_some(), "last_event_at moves as events arrive");

    // List with filters.
    let (status, all) = get(app, "/api/v1/subscriptions?is_active=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 3);
    for (query, n) in [
        ("channel_type=trades", 1),
        ("category=spot", 1),
        ("symbol=BTCUSDT", 1),
        ("requesting_service=test-service", 2),
        ("requesting_service=book-service&channel_type=orderbook", 1),
        ("is_active=false", 0),
    ] {
        let (_, list) = get(app, &format!("/api/v1/subscriptions?{query}")).await;
        assert_eq!(list.as_array().unwrap().len(), n, "{query}: {list}");
    }

    // Get and cancel.
    let (status, one) = get(app, &format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(
        (status, one["id"].clone()),
        (StatusCode::OK, created["id"].clone())
    );
    let (status, cancelled) = delete(app, &format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["is_active"], false);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        app.registry.status(&trades_key()).is_none(),
        "no one else wants the topic"
    );
    let (status, _) = delete(app, &format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(status, StatusCode::OK, "cancelling twice is harmless");

    // Cancel by service.
    let (status, n) = delete(app, "/api/v1/subscriptions/by-service/test-service").await;
    assert_eq!((status, n), (StatusCode::OK, json!({"cancelled": 1})));
    let (_, n) = delete(app, "/api/v1/subscriptions/by-service/book-service").await;
    assert_eq!(n, json!({"cancelled": 1}));
    let (_, n) = delete(app, "/api/v1/subscriptions/by-service/book-service").await;
    assert_eq!(n, json!({"cancelled": 0}));
    let (_, active) = get(app, "/api/v1/subscriptions?is_active=true").await;
    assert_eq!(active, json!([]));
    assert!(app.registry.snapshot().is_empty());

    // Balances (no wallet events in this test: empty but well-formed).
    let (status, b) = get(app, "/api/v1/balances?limit=100").await;
    assert_eq!(
        (status, b),
        (StatusCode::OK, json!({"balances": [], "margin": null}))
    );
    let (status, h) = get(
        app,
        "/api/v1/balances/history?coin=USDT&from=2025-11-25T00:00:00Z&to=2025-11-26T00:00:00Z&limit=100",
    )
    .await;
    assert_eq!((status, h), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn quickstart_walk_through_works_on_postgres() {
    let db = TestDatabase::postgres().await;
    let app = spawn_app(with_credentials(&db.url)).await;
    quickstart(&app).await;
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

#[tokio::test]
async fn quickstart_walk_through_works_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(with_credentials(&sqlite_url(dir.path()))).await;
    quickstart(&app).await;
    app.shutdown().await.expect("clean stop");
}

/// Asserts the JSON error shape and that the message mentions `needle`.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str, needle: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"], code, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn every_documented_error_answers_json_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;
    let url = format!("{}/api/v1/subscriptions", app.http());

    // Bad JSON.
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"channel_type\": ")
        .send()
        .await
        .unwrap();
    let (s, b) = (resp.status(), resp.json::<Value>().await.unwrap());
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "");

    let cases = [
        (
            json!({"channel_type": "nope", "symbol": "BTCUSDT", "requesting_service": "s"}),
            "invalid_request",
            "channel_type",
        ),
        (
            json!({"channel_type": "trades", "requesting_service": "s"}),
            "invalid_request",
            "symbol",
        ),
        (
            json!({"channel_type": "trades", "symbol": "btc usdt", "requesting_service": "s"}),
            "invalid_request",
            "symbol",
        ),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT"}),
            "invalid_request",
            "requesting_service",
        ),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT", "category": "futures", "requesting_service": "s"}),
            "invalid_request",
            "category",
        ),
        (
            json!({"channel_type": "orderbook", "symbol": "BTCUSDT", "depth": 7, "requesting_service": "s"}),
            "invalid_request",
            "depth",
        ),
        (
            json!({"channel_type": "orderbook", "symbol": "BTCUSDT", "depth": "deep", "requesting_service": "s"}),
            "invalid_request",
            "depth",
        ),
        (
            json!({"channel_type": "kline", "symbol": "BTCUSDT", "requesting_service": "s"}),
            "invalid_request",
            "interval",
        ),
        (
            json!({"channel_type": "kline", "symbol": "BTCUSDT", "interval": "7", "requesting_service": "s"}),
            "invalid_request",
            "interval",
        ),
        (
            json!({"channel_type": "balance", "requesting_service": "s"}),
            "private_channel_unavailable",
            "BYBIT_API_KEY",
        ),
        (
            json!({"channel_type": "order", "category": "linear", "requesting_service": "s"}),
            "private_channel_unavailable",
            "credentials",
        ),
    ];
    for (body, code, needle) in cases {
        let (s, b) = post(&app, body.clone()).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, code, needle);
    }

    // Unknown and malformed ids.
    let (s, b) = get(
        &app,
        &format!("/api/v1/subscriptions/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "");
    let (s, b) = delete(
        &app,
        &format!("/api/v1/subscriptions/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "");
    let (s, b) = get(&app, "/api/v1/subscriptions/not-a-uuid").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "id");

    // Bad query parameters.
    let (s, b) = get(&app, "/api/v1/subscriptions?is_active=maybe").await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "is_active",
    );
    let (s, b) = get(&app, "/api/v1/subscriptions?channel_type=nope").await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "channel_type",
    );
    let (s, b) = get(&app, "/api/v1/balances/history?limit=1001").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "limit");
    let (s, b) = get(&app, "/api/v1/balances/history?from=yesterday").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "from");

    // Missing or wrong key: 401 JSON, nothing created.
    let good = json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "s"});
    for key in [None, Some("wrong-key"), Some("")] {
        let mut req = Client::new().post(&url).json(&good);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        let (s, b) = (resp.status(), resp.json::<Value>().await.unwrap());
        assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized", "X-API-Key");
    }
    let resp = Client::new()
        .get(format!("{}/api/v1/balances", app.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Unknown route: JSON 404 too.
    let (s, b) = get(&app, "/api/v1/nothing-here").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "");

    let (_, list) = get(&app, "/api/v1/subscriptions").await;
    assert_eq!(list, json!([]), "no error path created anything");
    assert!(
        app.registry.snapshot().is_empty(),
        "no error path touched the desired set"
    );
    app.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn concurrent_identical_creates_make_one_subscription() {
    let db = TestDatabase::postgres().await;
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", db.url.clone())).await;
    let body =
        json!({"channel_type": "ticker", "symbol": "SOLUSDT", "requesting_service": "racer"});
    let results = futures::future::join_all((0..8).map(|_| post(&app, body.clone()))).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, b)| s.is_success() && b["id"] == results[0].1["id"])
    );
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

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
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;
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
