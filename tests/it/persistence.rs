//! Persistence (spec section 8): wallet events become exact `account_balances` rows in
//! batches, duplicates are ignored, a database outage blocks nothing upstream and loses
//! nothing, and the migrations go down and up again.

use std::{sync::Arc, time::Duration};

use reqwest::Client;
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    event::Event,
    health::{ComponentState, HealthBoard},
    pipeline_file::PersistenceConfig,
    shutdown::Supervisor,
    sink::postgres::{self, wallet::event_from_frame},
    store,
};

use crate::support::{
    TEST_API_KEY, TestConfig, TestDatabase, fixture, proxy::TcpProxy, spawn_app, sqlite_url,
    wait_until,
};

fn config() -> PersistenceConfig {
    PersistenceConfig {
        batch_size: 50,
        flush_interval: Duration::from_millis(50),
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        ..PersistenceConfig::default()
    }
}

struct Sink {
    tx: mpsc::Sender<Event>,
    db: sea_orm::DatabaseConnection,
    health: Arc<HealthBoard>,
    supervisor: Supervisor,
    /// Holds the sink's row file (rows it could not write).
    _rows: tempfile::TempDir,
}

async fn start_sink(url: &str, capacity: usize) -> Sink {
    let db = store::connect(&SecretString::from(url.to_owned()))
        .await
        .expect("db");
    let (tx, rx) = mpsc::channel(capacity);
    let health = Arc::new(HealthBoard::default());
    let supervisor = Supervisor::new(CancellationToken::new());
    let rows = tempfile::tempdir().expect("temp dir");
    let file = Arc::new(postgres::rowfile::RowFile::new(rows.path().join("t.rows")));
    postgres::spawn(rx, db.clone(), config(), file, health.clone(), &supervisor);
    Sink {
        tx,
        db,
        health,
        supervisor,
        _rows: rows,
    }
}

impl Sink {
    /// Closes the input and waits for the sink to drain.
    async fn finish(self) {
        drop(self.tx);
        self.supervisor.tracker.close();
        tokio::time::timeout(Duration::from_secs(30), self.supervisor.tracker.wait())
            .await
            .expect("sink drains");
    }
}

async fn count(db: &sea_orm::DatabaseConnection) -> Option<u64> {
    store::balances::count(db).await.ok()
}

async fn rows_are_exact_and_idempotent(url: &str) {
    let sink = start_sink(url, 16).await;
    let unified = event_from_frame(&fixture("wallet.json")).unwrap();
    let contract = event_from_frame(&fixture("wallet_classic_contract.json")).unwrap();

    sink.tx.send(unified.clone()).await.unwrap();
    sink.tx.send(unified.clone()).await.unwrap();
    sink.tx.send(contract).await.unwrap();
    let db = sink.db.clone();
    let done = wait_until(Duration::from_secs(20), || async {
        (count(&db).await == Some(4)).then_some(())
    })
    .await;
    assert!(done.is_some(), "3 coins + 1 coin, the duplicate ignored");
    sink.tx.send(unified).await.unwrap();
    sink.finish().await;
    assert_eq!(
        count(&db).await,
        Some(4),
        "a redelivered event adds nothing"
    );

    let history = store::balances::history(&db, Some("USDT"), None, None, 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    let contract_row = &history[0];
    assert_eq!(contract_row.account_type.as_deref(), Some("CONTRACT"));
    assert_eq!(contract_row.wallet_balance.as_deref(), Some("1290.1673867"));
    assert_eq!(contract_row.total_equity, None, "\"\" is NULL");
    let unified_row = &history[1];
    assert_eq!(unified_row.wallet_balance.as_deref(), Some("88.94040055"));
    assert_eq!(unified_row.cum_realised_pnl.as_deref(), Some("-0.17895808"));
    assert_eq!(unified_row.total_equity.as_deref(), Some("100.27419876"));
    assert_eq!(unified_row.exchange_ts, Some(1699764599844));

    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    let recent = store::balances::history(&db, None, Some(hour_ago), Some(chrono::Utc::now()), 10);
    assert_eq!(
        recent.await.unwrap().len(),
        4,
        "time range filter keeps today's rows"
    );
    let later = store::balances::history(&db, None, Some(chrono::Utc::now()), None, 10);
    assert!(
        later.await.unwrap().is_empty(),
        "and drops rows before `from`"
    );
}

#[tokio::test]
async fn wallet_events_become_exact_rows_once_on_postgres() {
    let db = TestDatabase::postgres().await;
    rows_are_exact_and_idempotent(&db.url).await;
    db.drop_database().await;
}

#[tokio::test]
async fn wallet_events_become_exact_rows_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    rows_are_exact_and_idempotent(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn balances_endpoints_return_the_stored_rows() {
    let db = TestDatabase::postgres().await;
    let sink = start_sink(&db.url, 16).await;
    sink.tx
        .send(event_from_frame(&fixture("wallet_classic_contract.json")).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    sink.tx
        .send(event_from_frame(&fixture("wallet.json")).unwrap())
        .await
        .unwrap();
    sink.finish().await;
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", db.url.clone())).await;
    let get = |path: &str| {
        Client::new()
            .get(format!("{}{path}", app.http()))
            .header("x-api-key", TEST_API_KEY)
            .send()
    };

    let latest: Value = get("/api/v1/balances?limit=100")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let coins: Vec<_> = latest["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["coin"].as_str().unwrap())
        .collect();
    assert_eq!(coins, ["BTC", "USDC", "USDT"]);
    let usdt = &latest["balances"][2];
    assert_eq!(
        usdt["wallet_balance"], "88.94040055",
        "latest USDT row is the unified one"
    );
    assert_eq!(usdt["account_type"], "UNIFIED");
    assert_eq!(latest["margin"]["total_equity"], "100.27419876");
    assert_eq!(latest["margin"]["account_type"], "UNIFIED");
    assert_eq!(latest["margin"]["exchange_ts"], 1699764599844i64);
    let two: Value = get("/api/v1/balances?limit=2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(two["balances"].as_array().unwrap().len(), 2);

    let history: Value = get("/api/v1/balances/history?coin=USDT")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["account_type"], "UNIFIED", "newest first");
    assert_eq!(rows[1]["wallet_balance"], "1290.1673867");
    let future: Value = get("/api/v1/balances/history?from=2999-01-01T00:00:00Z")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(future, serde_json::json!([]));
    let one: Value = get("/api/v1/balances/history?limit=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

#[tokio::test]
async fn a_database_outage_blocks_nothing_upstream_and_loses_no_row() {
    let db = TestDatabase::postgres().await;
    let proxy = TcpProxy::start("127.0.0.1:5432").await;
    let (_, name) = db.url.rsplit_once('/').unwrap();
    let url = format!("postgres://postgres@{}/{name}", proxy.host_port());
    let sink = start_sink(&url, 8).await;
    let frame = fixture("wallet.json");

    // ~20 events/s for 16 s; the database is cut from second 3 to second 13.
    let mut sent = 0u64;
    let mut saw_down = false;
    let start = std::time::Instant::now();
    for i in 0..320u32 {
        if i == 60 {
            proxy.cut();
        }
        if i == 260 {
            proxy.restore();
        }
        let accepted = tokio::time::timeout(
            Duration::from_secs(5),
            sink.tx.send(event_from_frame(&frame).unwrap()),
        )
        .await;
        assert!(
            matches!(accepted, Ok(Ok(()))),
            "the sink's input never blocks (event {i})"
        );
        sent += 1;
        saw_down |= sink.health.snapshot().database == ComponentState::Down;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(start.elapsed() >= Duration::from_secs(15));
    assert!(saw_down, "the outage shows on the health board");

    let db_direct = store::connect(&SecretString::from(db.url.clone()))
        .await
        .unwrap();
    let all = wait_until(Duration::from_secs(60), || async {
        (count(&db_direct).await == Some(sent * 3)).then_some(())
    })
    .await;
    assert!(
        all.is_some(),
        "every buffered row written after the outage: {:?} of {}",
        count(&db_direct).await,
        sent * 3
    );
    assert_eq!(sink.health.snapshot().database, ComponentState::Up);
    sink.finish().await;
    drop(db_direct);
    db.drop_database().await;
}

async fn migrations_go_down_and_up(url: &str) {
    use migration::{Migrator, MigratorTrait};
    let db = store::connect(&SecretString::from(url.to_owned()))
        .await
        .unwrap();
    Migrator::down(&db, None).await.expect("every down works");
    Migrator::up(&db, None).await.expect("and up again");
    assert_eq!(store::balances::count(&db).await.unwrap(), 0);
}

#[tokio::test]
async fn migrations_go_down_and_up_on_postgres_and_sqlite() {
    let db = TestDatabase::postgres().await;
    migrations_go_down_and_up(&db.url).await;
    db.drop_database().await;
    let dir = tempfile::tempdir().unwrap();
    migrations_go_down_and_up(&sqlite_url(dir.path())).await;
}

#[tokio::test]
async fn closing_the_input_flushes_every_buffered_row() {
    let dir = tempfile::tempdir().unwrap();
    let sink = start_sink(&sqlite_url(dir.path()), 256).await;
    let frame = fixture("wallet.json");
    for _ in 0..200 {
        sink.tx
            .send(event_from_frame(&frame).unwrap())
            .await
            .unwrap();
    }
    let db = sink.db.clone();

    sink.finish().await;

    assert_eq!(
        count(&db).await,
        Some(600),
        "200 events × 3 coins, all written before the end"
    );
}
