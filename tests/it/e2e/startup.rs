//! Issue 14 "Start together": three real `ws-gateway` binaries started at the same moment on
//! one empty PostgreSQL database all come up (the migrator runs under an advisory lock, so no
//! instance dies on a half-created type or table of another), and the schema is there once.

use sea_orm::{ConnectionTrait, Database, Statement};

use fake_bybit::FakeBybit;

use crate::support::{
    TestDatabase, amqp_url,
    binary::{Binary, gateway_vars},
    http, unique,
};

const PIPELINE: &str = "[source]\nconnect_on_start = []\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_started_at_once_on_an_empty_database_all_come_up() {
    // Arrange: one fresh database, one fake Bybit, three environments (own prefixes).
    let db = TestDatabase::postgres().await;
    let fake = FakeBybit::start().await;
    let vars: Vec<_> = (0..3)
        .map(|_| {
            let mut v = gateway_vars(&fake, amqp_url(), &unique("startup"));
            v.push(("DATABASE_URL", db.url.clone()));
            v
        })
        .collect();

    // Act: the three processes are spawned together, then each waits for its /health.
    let (a, b, c) = tokio::join!(
        Binary::start(&vars[0], PIPELINE),
        Binary::start(&vars[1], PIPELINE),
        Binary::start(&vars[2], PIPELINE),
    );

    // Assert: every process is alive and healthy; the migrations ran exactly once.
    for mut bin in [a, b, c] {
        assert!(
            bin.child.try_wait().unwrap().is_none(),
            "the instance still runs: {}",
            bin.log()
        );
        let resp = http::client()
            .get(format!("{}/health", bin.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", bin.log());
        assert!(
            !bin.log().contains("cannot run migrations"),
            "{}",
            bin.log()
        );
    }
    let conn = Database::connect(&db.url).await.unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT count(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    let applied: i64 = row.try_get("", "n").unwrap();
    assert_eq!(
        applied as usize,
        migration_count(),
        "each migration applied once"
    );
    let _ = conn.close().await;
    db.drop_database().await;
}

fn migration_count() -> usize {
    use migration::MigratorTrait;
    migration::Migrator::migrations().len()
}
