//! Restarts on the same database while the account keeps trading: a clean stop (SIGTERM)
//! repeats and loses nothing; a SIGKILL and 10 s dead lose nothing and repeat only items after
//! the last persisted cursor (the test prints how many).

use std::time::Duration;

use fake_bybit::{FakeBybit, PRIVATE};
use sea_orm::{ConnectionTrait, Database, Statement};

use super::{counts, drain, exec_id, items, order_id};
use crate::support::{
    TestDatabase, amqp, amqp_url,
    binary::{Binary, gateway_vars},
    secs, unique,
};

const PIPELINE: &str = r#"
[source]
connect_on_start = []
reconnect_initial = "100ms"
reconnect_max = "500ms"

[[subscriptions]]
channel_type = "execution"

[[subscriptions]]
channel_type = "order"
"#;

async fn start(fake: &FakeBybit, db: &TestDatabase, prefix: &str) -> Binary {
    let mut vars = gateway_vars(fake, amqp_url(), prefix);
    vars.push(("DATABASE_URL", db.url.clone()));
    let bin = Binary::start(&vars, PIPELINE).await;
    assert!(
        fake.wait_subscribed(PRIVATE, "execution", secs(20)).await
            && fake.wait_subscribed(PRIVATE, "order", secs(20)).await,
        "private topics subscribed: {}",
        bin.log()
    );
    bin
}

/// The persisted execution cursor (ms), if any.
async fn execution_cursor(db: &TestDatabase) -> Option<i64> {
    let conn = Database::connect(&db.url).await.ok()?;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT exchange_ts FROM catchup_cursors WHERE topic = 'execution'".to_owned(),
        ))
        .await
        .ok()??;
    row.try_get::<i64>("", "exchange_ts").ok()
}

/// Runs two gateways one after the other on one database while the account trades; the
/// first ends by SIGKILL (`kill`) or SIGTERM, the second starts `dead` later.
async fn restart(kill: bool, dead: Duration) {
    let fake = FakeBybit::start().await;
    let db = TestDatabase::postgres().await;
    let prefix = unique("catchup");
    let account = fake.account();
    let mut first = start(&fake, &db, &prefix).await;
    let trading = account.keep_trading("linear", "BTCUSDT", Duration::from_millis(100));
    tokio::time::sleep(secs(3)).await;
    if kill {
        first.child.kill().expect("SIGKILL");
        let _ = first.child.wait();
    } else {
        let status = first.sigterm(secs(20)).await.expect("stops");
        assert!(status.success(), "{}", first.log());
    }
    let cursor = execution_cursor(&db).await;
    tokio::time::sleep(dead).await;
    let second = start(&fake, &db, &prefix).await;
    tokio::time::sleep(secs(3)).await;
    drop(trading);
    tokio::time::sleep(secs(3)).await;

    let url = amqp_url();
    let execs = drain(&url, &format!("{prefix}.executions"), secs(3)).await;
    let orders = drain(&url, &format!("{prefix}.orders"), secs(3)).await;
    let exec_items = items(&execs);
    let have = counts(&exec_items, exec_id);
    let produced = account.executions();
    let missing: Vec<String> = produced
        .iter()
        .map(exec_id)
        .filter(|id| !have.contains_key(id))
        .collect();
    let repeated: Vec<&String> = have
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    // A repeat must be an item after the last persisted cursor.
    let before_cursor = produced
        .iter()
        .filter(|e| repeated.contains(&&exec_id(e)))
        .filter(|e| {
            let t: i64 = e["execTime"].as_str().unwrap().parse().unwrap();
            cursor.is_some_and(|c| t < c)
        })
        .count();
    let order_counts = counts(&items(&orders), order_id);
    let order_repeats = order_counts.values().filter(|n| **n > 1).count();
    let mut latest = std::collections::HashMap::new();
    for u in account.order_updates() {
        latest.insert(u["orderId"].as_str().unwrap().to_owned(), order_id(&u));
    }
    let orders_missing = latest
        .values()
        .filter(|id| !order_counts.contains_key(*id))
        .count();
    eprintln!(
        "{} restart, {dead:?} dead: executions produced {}, in queue {}, recovered {}, missing {}, repeated {} (before the cursor {before_cursor}); orders {} (latest state missing {orders_missing}), order updates repeated {order_repeats}",
        if kill { "SIGKILL" } else { "SIGTERM" },
        produced.len(),
        exec_items.len(),
        execs.iter().filter(|e| e["type"] == "recovery").count(),
        missing.len(),
        repeated.len(),
        latest.len(),
    );
    drop(second);
    amqp::cleanup(&url, &prefix, &[]).await;
    db.drop_database().await;
    assert!(missing.is_empty(), "missing executions: {missing:?}");
    assert_eq!(orders_missing, 0, "orders without their latest state");
    assert_eq!(before_cursor, 0, "repeats only after the persisted cursor");
    if !kill {
        assert!(repeated.is_empty(), "repeated executions: {repeated:?}");
        assert_eq!(order_repeats, 0, "repeated order updates");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_repeats_and_loses_nothing() {
    restart(false, secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_and_ten_seconds_dead_lose_nothing() {
    restart(true, secs(10)).await;
}
