//! Hostile or careless input (issue 12): client-chosen metric labels, half-open and oversized
//! HTTP requests, the limits of key holders (subscriptions per service, `/ws` clients and
//! message size) and NUL bytes the database cannot store.

use std::time::Duration;

use futures::StreamExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::Method;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use ws_gateway::telemetry;

use super::*;
use crate::support::{metrics::scrape, wsclient::Closed};

const STANDARD: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// Series of the HTTP request counter: (all, those whose method or route a client could have
/// made up, those labelled `method="other"`). The recorder is process-wide, so tests running
/// alongside add their own (standard-method) series to the first figure.
async fn http_series(app: &TestApp) -> (usize, usize, usize) {
    let exp = scrape(&app.http()).await;
    let series: Vec<_> = exp
        .samples
        .iter()
        .filter(|s| s.name == telemetry::HTTP_REQUESTS)
        .collect();
    let made_up = series
        .iter()
        .filter(|s| {
            let m = s.labels.get("method").map(String::as_str).unwrap_or("");
            let r = s.labels.get("route").map(String::as_str).unwrap_or("");
            (!m.is_empty() && !STANDARD.contains(&m) && m != "other") || r.contains("zz")
        })
        .count();
    let other = series
        .iter()
        .filter(|s| s.labels.get("method").is_some_and(|m| m == "other"))
        .count();
    (series.len(), made_up, other)
}

async fn random_requests(app: &TestApp, n: usize, seed: u64) {
    let base = app.http();
    let mut rng = StdRng::seed_from_u64(seed);
    let reqs: Vec<(Method, String)> = (0..n)
        .map(|_| {
            let len = rng.random_range(1..64);
            let method: String = (0..len)
                .map(|_| char::from(rng.random_range(b'A'..=b'Z')))
                .collect();
            let path: String = (0..rng.random_range(1..20))
                .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                .collect();
            (
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{base}/zz{path}"),
            )
        })
        .collect();
    let http = client();
    futures::stream::iter(reqs)
        .map(|(m, url)| {
            let http = http.clone();
            async move {
                let _ = http.request(m, url).send().await;
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_methods_and_paths_add_no_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;
    // Warm up: the bounded label values (`other`, the statuses) exist after this.
    random_requests(&app, 100, 1).await;
    let _ = http_series(&app).await; // the scrape's own series
    let before = http_series(&app).await;
    random_requests(&app, 10_000, 2).await;
    let after = http_series(&app).await;
    eprintln!(
        "ws_gateway_http_requests_total series: before {} after {} (method=\"other\": {} / {}; \
         made-up labels: {} / {})",
        before.0, after.0, before.2, after.2, before.1, after.1
    );
    assert_eq!(
        after.1, 0,
        "no series carries a client-chosen method or path"
    );
    assert!(after.2 > 0, "the made-up methods are counted as `other`");
    assert_eq!(before.2, after.2, "10,000 random requests added series");
    app.shutdown().await.unwrap();
}

/// A normal request still gets an answer (`/health`: 200, or 503 with Bybit unreachable).
async fn assert_health_answers(app: &TestApp) {
    let resp = client()
        .get(format!("{}/health", app.http()))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success() || resp.status().as_u16() == 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()));
    config.pipeline.http.header_timeout = Duration::from_secs(1);
    let app = spawn_app(config).await;

    let mut socks = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        socks.push(s);
    }
    // Normal requests still succeed meanwhile.
    assert_health_answers(&app).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut held = 0;
    for s in &mut socks {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(_)) => {
                // Some bytes (an error answer) then the close.
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await
                    && n > 0
                {
                    held += 1;
                }
            }
            Err(_) => held += 1,
        }
    }
    eprintln!("half-open connections still held after the header timeout: {held} of 50");
    assert_eq!(held, 0);
    assert_health_answers(&app).await;
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_is_413_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;
    let big = format!(
        "{{\"channel_type\":\"trades\",\"symbol\":\"BTCUSDT\",\"requesting_service\":\"{}\"}}",
        "x".repeat(200_000)
    );
    let resp = client()
        .post(format!("{}/api/v1/subscriptions", app.http()))
        .header("x-api-key", TEST_API_KEY)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large", "{body}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_service_are_capped_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestConfig::default()
        .var("DATABASE_URL", sqlite_url(dir.path()))
        .var("BYBIT_WS_URL", silent_bybit_url());
    config.pipeline.http.max_subscriptions_per_service = 2;
    let app = spawn_app(config).await;
    let sub = |symbol: &str| json!({"channel_type": "trades", "symbol": symbol, "requesting_service": "capped"});
    assert_eq!(post(&app, sub("BTCUSDT")).await.0, StatusCode::CREATED);
    assert_eq!(post(&app, sub("ETHUSDT")).await.0, StatusCode::CREATED);
    let (s, b) = post(&app, sub("SOLUSDT")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["error"], "limit_exceeded", "{b}");
    // The same one again is still the idempotent 200; another service is not affected.
    assert_eq!(post(&app, sub("BTCUSDT")).await.0, StatusCode::OK);
    let other =
        json!({"channel_type": "trades", "symbol": "SOLUSDT", "requesting_service": "other"});
    assert_eq!(post(&app, other).await.0, StatusCode::CREATED);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_clients_are_capped_and_big_messages_close_1009() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()));
    config.pipeline.downstream.max_clients = 2;
    config.pipeline.downstream.max_message_bytes = 1024;
    let app = spawn_app(config).await;
    let mut a = wsclient::connect(&app).await;
    let _b = wsclient::connect(&app).await;
    match wsclient::connect_with(&app, Some(&app.api_key), false).await {
        wsclient::Connect::Refused(status) => assert_eq!(status, 503),
        wsclient::Connect::Open(_) => panic!("a third client was let in past max_clients = 2"),
    }
    // A small message is fine; a big one closes the client with 1009.
    let pong = a.request(json!({"op": "ping"})).await;
    assert_eq!(pong["op"], "pong", "{pong}");
    a.send(json!({"op": "ping", "req_id": "x".repeat(4096)}))
        .await;
    assert_eq!(
        a.closed_within(Duration::from_secs(5)).await,
        Some(Closed::Code(1009))
    );
    drop(a);
    // Its slot is free again.
    let ok = wait_until(Duration::from_secs(5), || async {
        match wsclient::connect_with(&app, Some(&app.api_key), false).await {
            wsclient::Connect::Open(_) => Some(()),
            wsclient::Connect::Refused(_) => None,
        }
    })
    .await;
    assert!(ok.is_some(), "a slot frees when a client leaves");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_400_on_postgres() {
    let db = TestDatabase::postgres().await;
    let app = spawn_app(
        TestConfig::default()
            .var("DATABASE_URL", db.url.clone())
            .var("BYBIT_WS_URL", silent_bybit_url()),
    )
    .await;
    for path in [
        "/api/v1/balances/history?coin=%00",
        "/api/v1/balances/history?coin=BTC%00",
        "/api/v1/subscriptions?requesting_service=a%00b",
        "/api/v1/subscriptions?symbol=%00",
        "/api/v1/subscriptions/by-service/a%00b",
    ] {
        let resp = if path.contains("by-service") {
            delete(&app, path).await
        } else {
            get(&app, path).await
        };
        assert_eq!(resp.0, StatusCode::BAD_REQUEST, "{path}: {}", resp.1);
        assert_eq!(resp.1["error"], "invalid_request", "{path}: {}", resp.1);
    }
    for body in [
        json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "a\u{0}b"}),
        json!({"channel_type": "trades", "symbol": "BTC\u{0}USDT", "requesting_service": "s"}),
    ] {
        let (s, b) = post(&app, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert_eq!(b["error"], "invalid_request", "{b}");
    }
    app.shutdown().await.unwrap();
    db.drop_database().await;
}
