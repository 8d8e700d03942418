//! `/metrics` against the contract: every metric named in `telemetry::ALL` is exported
//! before any traffic (the parser is `crate::support::metrics`).

use ws_gateway::telemetry;

use crate::support::{TestConfig, metrics::scrape, spawn_app, sqlite_url};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_contract_metric_is_exported_before_any_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;

    let families = scrape(&app.http()).await.families();

    let missing: Vec<&str> = telemetry::ALL
        .iter()
        .copied()
        .filter(|name| !families.contains(*name))
        .collect();
    assert!(missing.is_empty(), "missing from /metrics: {missing:?}");
    app.shutdown().await.unwrap();
}
