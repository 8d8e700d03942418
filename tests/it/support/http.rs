//! The REST API as tests call it: a client with the test key, and `POST` / `GET` / `DELETE`
//! of an app on port 0 returning the status and the JSON body.

use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::{TEST_API_KEY, TestApp, TestConfig, silent_bybit_url};

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
