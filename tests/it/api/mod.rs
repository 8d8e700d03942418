//! REST API (spec section 6): the seed quickstart walked with real HTTP on PostgreSQL and on
//! SQLite ([`quickstart`]), every documented error path ([`errors`]), restart restore, health,
//! ready, metrics and the OpenAPI file ([`ops`]).

mod bindings;
mod errors;
mod ops;
mod quickstart;
use std::{sync::Arc, time::Duration};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use ws_gateway::{
    event::{Category, Endpoint, Event, EventClass},
    subscriptions::{TopicKey, TopicStatus},
};

use crate::helpers::{
    TEST_API_KEY, TestApp, TestConfig, TestDatabase, silent_bybit_url, spawn_app, sqlite_url,
    wait_until,
};
/// A client that sends the test key.
pub fn client() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", TEST_API_KEY.parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

/// Test settings with Bybit credentials (private channels allowed) and an unreachable Bybit.
pub fn with_credentials(db_url: &str) -> TestConfig {
    TestConfig::default()
        .var("DATABASE_URL", db_url)
        .var("BYBIT_WS_URL", silent_bybit_url())
        .var("BYBIT_REST_URL", "http://127.0.0.1:9")
        .var("BYBIT_API_KEY", "test-key")
        .var("BYBIT_API_SECRET", "test-secret")
}

pub async fn post(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let resp = client()
        .post(format!("{}/api/v1/subscriptions", app.http()))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

pub async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let resp = client()
        .get(format!("{}{path}", app.http()))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

pub async fn delete(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let resp = client()
        .delete(format!("{}{path}", app.http()))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

pub fn trades_key() -> TopicKey {
    TopicKey::new(Endpoint::Public(Category::Linear), "publicTrade.BTCUSDT")
}

/// A trades event as the pipeline would broadcast it.
pub fn trade_event() -> Arc<Event> {
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
