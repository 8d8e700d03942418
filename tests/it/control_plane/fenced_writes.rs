//! The statements only an owner's writes pass: the catch-up cursor, subscription statuses,
//! public trade marks.

use std::time::Duration;

use ws_gateway::{
    cluster::Unit,
    event::{Category, Endpoint},
    subscriptions::TopicKey,
};

use crate::support::TestDatabase;

/// The catch-up cursor is written only by the holder of the private lease at its epoch (the
/// fence is in the statement), and never moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_cursor_is_written_only_under_the_private_lease_at_its_epoch() {
    use ws_gateway::{cluster::store, store::cursors};

    let db = TestDatabase::postgres().await;
    let conn = db.migrated().await;
    let ttl = Duration::from_secs(5);
    store::register(&conn, "x", "127.0.0.1:1").await.unwrap();
    let epoch = store::claim(&conn, &Unit::Private, "x", ttl)
        .await
        .unwrap()
        .expect("a free lease is claimed")
        .epoch;
    assert_eq!(epoch, 1);
    assert_eq!(
        store::claim(&conn, &Unit::Private, "y", ttl).await.unwrap(),
        None
    );
    let mut c = cursors::Cursor::default();
    c.advance(100, "a");
    assert!(
        cursors::save_fenced(&conn, "execution", &c, "x", 1)
            .await
            .unwrap()
    );
    c.advance(200, "b");
    assert!(
        !cursors::save_fenced(&conn, "execution", &c, "x", 0)
            .await
            .unwrap()
    );
    assert!(
        !cursors::save_fenced(&conn, "execution", &c, "y", 1)
            .await
            .unwrap()
    );
    let older = {
        let mut o = cursors::Cursor::default();
        o.advance(50, "z");
        o
    };
    assert!(
        !cursors::save_fenced(&conn, "execution", &older, "x", 1)
            .await
            .unwrap()
    );
    // Released and taken by y at epoch 2: x's writes are refused, y's land.
    store::release(&conn, &Unit::Private, "x").await.unwrap();
    assert_eq!(
        store::claim(&conn, &Unit::Private, "y", ttl)
            .await
            .unwrap()
            .map(|c| c.epoch),
        Some(2)
    );
    assert!(
        !cursors::save_fenced(&conn, "execution", &c, "x", 1)
            .await
            .unwrap()
    );
    assert!(
        cursors::save_fenced(&conn, "execution", &c, "y", 2)
            .await
            .unwrap()
    );
    let stored = cursors::load(&conn).await.unwrap();
    assert_eq!(stored["execution"].ts, 200);
    let _ = conn.close().await;
    db.drop_database().await;
}

/// Statuses and trade marks are the owner's to write: they land only under a live lease of the
/// writer at its epoch; a time-only mark never replaces a trade; the next claim after the
/// owner's death brings the mark, a release forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_and_trade_marks_are_written_only_by_the_owner_at_its_epoch() {
    use sea_orm::ConnectionTrait;
    use ws_gateway::{cluster::marks::Mark, cluster::store, subscriptions::TopicStatus};

    let db = TestDatabase::postgres().await;
    let conn = db.migrated().await;
    let key = TopicKey::new(Endpoint::Public(Category::Linear), "publicTrade.BTCUSDT");
    let unit = Unit::of(&key);
    let ttl = Duration::from_secs(5);
    store::register(&conn, "x", "127.0.0.1:1").await.unwrap();
    store::register(&conn, "y", "127.0.0.1:2").await.unwrap();
    let epoch = store::claim(&conn, &unit, "x", ttl)
        .await
        .unwrap()
        .unwrap()
        .epoch;
    // Two services' rows of the topic, created (say) through two other instances.
    for service in ["svc-1", "svc-2"] {
        conn.execute_unprepared(&format!(
            "INSERT INTO subscriptions (id, channel_type, category, symbol, topic, endpoint, \
             requesting_service, is_active, status, created_at, updated_at) VALUES \
             (gen_random_uuid(), 'trades', 'linear', 'BTCUSDT', 'publicTrade.BTCUSDT', 'linear', \
             '{service}', TRUE, 'pending', now(), now())"
        ))
        .await
        .unwrap();
    }
    let statuses = |conn: &sea_orm::DatabaseConnection| {
        let rows = query(
            conn,
            "SELECT status FROM subscriptions ORDER BY requesting_service",
        );
        async move {
            let rows = rows.await;
            rows.iter()
                .map(|r| r.try_get::<String>("", "status").unwrap())
                .collect::<Vec<_>>()
        }
    };
    let active = [(key.clone(), epoch, TopicStatus::Active)];
    // Not the owner, or not its epoch: nothing lands.
    assert_eq!(store::write_statuses(&conn, "y", &active).await.unwrap(), 0);
    let stale = [(key.clone(), epoch + 1, TopicStatus::Active)];
    assert_eq!(store::write_statuses(&conn, "x", &stale).await.unwrap(), 0);
    assert_eq!(statuses(&conn).await, ["pending", "pending"]);
    // The owner at its epoch: every row of the topic; again, nothing to change.
    assert_eq!(store::write_statuses(&conn, "x", &active).await.unwrap(), 2);
    assert_eq!(store::write_statuses(&conn, "x", &active).await.unwrap(), 0);
    assert_eq!(statuses(&conn).await, ["active", "active"]);

    let mark = |id: &str, time: u64| Mark {
        id: id.to_owned(),
        time,
    };
    let lease_mark = |conn: &sea_orm::DatabaseConnection| {
        let rows = query(
            conn,
            "SELECT trade_mark_id, trade_mark_time FROM cluster_leases",
        );
        async move {
            let rows = rows.await;
            (
                rows[0]
                    .try_get::<Option<String>>("", "trade_mark_id")
                    .unwrap(),
                rows[0]
                    .try_get::<Option<i64>>("", "trade_mark_time")
                    .unwrap(),
            )
        }
    };
    // A time-only mark lands where there is none; it never replaces a trade.
    store::write_trade_marks(&conn, "x", &[(unit.clone(), epoch, mark("", 1_000))])
        .await
        .unwrap();
    assert_eq!(lease_mark(&conn).await, (Some(String::new()), Some(1_000)));
    store::write_trade_marks(&conn, "x", &[(unit.clone(), epoch, mark("77", 2_000))])
        .await
        .unwrap();
    store::write_trade_marks(&conn, "x", &[(unit.clone(), epoch, mark("", 3_000))])
        .await
        .unwrap();
    store::write_trade_marks(&conn, "y", &[(unit.clone(), epoch, mark("99", 4_000))])
        .await
        .unwrap();
    assert_eq!(lease_mark(&conn).await, (Some("77".into()), Some(2_000)));
    // x dies (its lease expires): y's claim brings x's last trade.
    conn.execute_unprepared("UPDATE cluster_leases SET expires_at = now() - interval '1 second'")
        .await
        .unwrap();
    let claimed = store::claim(&conn, &unit, "y", ttl).await.unwrap().unwrap();
    assert_eq!(claimed.epoch, epoch + 1);
    assert_eq!(claimed.trade_mark, Some(mark("77", 2_000)));
    // x's late writes no longer land.
    let pending = [(key.clone(), epoch, TopicStatus::Pending)];
    assert_eq!(
        store::write_statuses(&conn, "x", &pending).await.unwrap(),
        0
    );
    // Released (nobody wants it): the mark goes with it; the next claim brings none.
    store::release(&conn, &unit, "y").await.unwrap();
    let claimed = store::claim(&conn, &unit, "x", ttl).await.unwrap().unwrap();
    assert_eq!(claimed.trade_mark, None);
    let _ = conn.close().await;
    db.drop_database().await;
}

/// The rows `sql` returns.
fn query(
    conn: &sea_orm::DatabaseConnection,
    sql: &str,
) -> impl std::future::Future<Output = Vec<sea_orm::QueryResult>> + use<> {
    use sea_orm::ConnectionTrait;
    let (conn, sql) = (conn.clone(), sql.to_owned());
    async move {
        let stmt = sea_orm::Statement::from_string(conn.get_database_backend(), sql);
        conn.query_all_raw(stmt).await.expect("query")
    }
}
