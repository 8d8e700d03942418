//! Issue 12, the database away (through the test's own proxy to the real PostgreSQL):
//! - while running, `/health` stays 200 `degraded` naming the database, routes that need it
//!   answer 503 `database_unavailable` at once, `/ready` fails;
//! - at stop, every buffered balance row goes to `<spool_dir>/<prefix>.rows` and reaches
//!   `account_balances` at the next start, which then removes the file.

use std::time::{Duration, Instant};

use serde_json::json;

use fake_bybit::{FakeBybit, PRIVATE};
use ws_gateway::event::EventClass;

use crate::support::{
    TestConfig, TestDatabase, fixture,
    http::{client, get, post},
    proxy::TcpProxy,
    secs, spawn_app,
    stack::against,
    unique, wait_until,
};

/// The test database, and its URL through a fresh proxy.
async fn proxied_db() -> (TcpProxy, TestDatabase, String) {
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    let db = TestDatabase::postgres().await;
    let proxied = db.url.replacen("127.0.0.1:5432", &proxy.host_port(), 1);
    assert_ne!(
        proxied, db.url,
        "the test database URL names 127.0.0.1:5432"
    );
    (proxy, db, proxied)
}

async fn count_rows(url: &str) -> u64 {
    let db = sea_orm::Database::connect(url)
        .await
        .expect("direct connection");
    let n = ws_gateway::store::balances::count(&db)
        .await
        .expect("count");
    let _ = db.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_rows_buffered_while_the_database_is_away_at_stop_land_at_the_next_start() {
    // Arrange: the app reaches PostgreSQL through a proxy; subscribed to the wallet.
    let (proxy, db, proxied) = proxied_db().await;
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("dbstop");
    let mut config: TestConfig = against(&fake, &proxied).var("WS_GATEWAY_SERVICE_NAME", &prefix);
    config.pipeline.publish.spool_dir = dir.path().join("spool");
    config.pipeline.process.shutdown_timeout = secs(8);
    let app = spawn_app(config.clone()).await;
    let (status, sub) = post(
        &app,
        json!({"channel_type": "balance", "requesting_service": "treasury"}),
    )
    .await;
    assert!(status.is_success(), "{status}: {sub}");
    assert!(fake.wait_subscribed(PRIVATE, "wallet", secs(10)).await);
    let mut events = app.events.subscribe();

    // Act: cut the database, push wallet frames, stop, restore, start on the same directory.
    proxy.cut();
    let wallets = 25;
    let wallet = fixture("wallet.json");
    for _ in 0..wallets {
        assert_eq!(fake.push_topic("wallet", &wallet), 1);
    }
    let mut seen = 0;
    while seen < wallets {
        let ev = tokio::time::timeout(secs(10), events.recv())
            .await
            .expect("every wallet event reaches the sinks")
            .expect("event");
        if ev.class == EventClass::Balances {
            seen += 1;
        }
    }
    let stop = Instant::now();
    app.shutdown().await.expect("clean stop");
    let stopped_in = stop.elapsed();
    let file = dir.path().join("spool").join(format!("{prefix}.rows"));
    let on_disk = std::fs::read_to_string(&file)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    proxy.restore();
    let app = spawn_app(config).await;

    // Assert: every row (3 coins per wallet frame) is in account_balances; the file is gone.
    let want = (wallets * 3) as u64;
    let found = wait_until(secs(30), || async {
        let n = count_rows(&db.url).await;
        (n >= want).then_some(n)
    })
    .await;
    let n = count_rows(&db.url).await;
    eprintln!(
        "database away at stop: stopped in {stopped_in:?}, {on_disk} rows on disk, {n} of {want} rows found after the restart"
    );
    assert_eq!(found, Some(want), "every wallet row after the restart");
    let gone = wait_until(secs(5), || async { (!file.exists()).then_some(()) }).await;
    assert!(gone.is_some(), "the row file is removed once written");
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_leaves_health_degraded_routes_503_at_once_and_ready_failing() {
    let (proxy, db, proxied) = proxied_db().await;
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = against(&fake, &proxied).var("WS_GATEWAY_SERVICE_NAME", unique("dbcut"));
    config.pipeline.publish.spool_dir = dir.path().join("spool");
    let app = spawn_app(config).await;
    let (status, _) = get(&app, "/api/v1/balances").await;
    assert_eq!(status, 200, "the database answers before the cut");

    proxy.cut();
    let cut = Instant::now();
    // A route right after the cut, before anything noticed: answered by the pool's timeout.
    let t = Instant::now();
    let (first_status, first) = get(&app, "/api/v1/balances/history").await;
    let first_took = t.elapsed();
    // The health board notices (database ping); /health stays 200, degraded.
    let degraded = wait_until(secs(15), || async {
        let (status, body) = get(&app, "/health").await;
        (body["components"]["database"] == "down").then_some((status, body))
    })
    .await;
    let noticed = cut.elapsed();
    let (h_status, health) = degraded.expect("the database shows down in /health");
    let t = Instant::now();
    let resp = client()
        .get(format!("{}/api/v1/subscriptions", app.http()))
        .send()
        .await
        .unwrap();
    let route_took = t.elapsed();
    let route_status = resp.status();
    let route: serde_json::Value = resp.json().await.unwrap();
    let (ready_status, ready) = get(&app, "/ready").await;
    eprintln!(
        "database cut: first route {first_status} in {first_took:?}; /health {h_status} {} after {noticed:?}; \
         route {route_status} in {route_took:?}; /ready {ready_status}",
        health["status"]
    );

    assert_eq!(h_status, 200, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(first_status, 503, "{first}");
    assert_eq!(first["error"], "database_unavailable");
    assert!(first_took < Duration::from_millis(2500), "{first_took:?}");
    assert_eq!(route_status, 503, "{route}");
    assert_eq!(route["error"], "database_unavailable");
    assert!(route_took < Duration::from_millis(2500), "{route_took:?}");
    assert_eq!(ready_status, 503);
    assert!(
        ready["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("database")),
        "{ready}"
    );

    // Back: the routes answer again.
    proxy.restore();
    let back = wait_until(secs(20), || async {
        let (status, _) = get(&app, "/api/v1/balances").await;
        (status == 200).then_some(())
    })
    .await;
    assert!(back.is_some(), "routes answer once the database is back");
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}
