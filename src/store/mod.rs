//! Persistence: the database connection, migrations at startup, entities ([`entity`]) and
//! queries per table (`subscriptions`, [`balances`]).

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use secrecy::{ExposeSecret, SecretString};

use migration::{Migrator, MigratorTrait};

pub mod balances;
pub mod cursors;
pub mod entity;
pub(crate) mod subscriptions;

/// A database that could not be reached or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sea_orm::DbErr),
    #[error("cannot run migrations: {0}")]
    Migrate(#[source] sea_orm::DbErr),
}

/// Connects (creating the SQLite file if needed) and runs every pending migration.
pub async fn connect(url: &SecretString) -> Result<DatabaseConnection, StoreError> {
    let mut opts = ConnectOptions::new(url.expose_secret().to_owned());
    opts.sqlx_logging(false)
        .max_connections(10)
        .connect_timeout(std::time::Duration::from_secs(5))
        // Short: an API route that needs an unreachable database answers 503 within a second.
        .acquire_timeout(std::time::Duration::from_millis(800));
    let db = Database::connect(opts).await.map_err(StoreError::Connect)?;
    migrate(url, &db).await?;
    Ok(db)
}

/// Key of the PostgreSQL advisory lock held around the migrator (any constant unique to us:
/// "wsgw" "migr" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7773_6777_6d69_6772;

/// Runs every pending migration. On PostgreSQL, several instances starting at the same moment
/// on an empty database would race on `CREATE TABLE`/`CREATE TYPE` (one wins, the others fail on
/// `pg_type_typname_nsp_index`): the migrator runs on a connection of its own that holds a
/// session advisory lock, so they take turns and the later ones find nothing pending. The lock
/// is released explicitly, and by closing the connection if anything fails. SQLite (one file,
/// one process) runs the migrator on the pool.
async fn migrate(url: &SecretString, db: &DatabaseConnection) -> Result<(), StoreError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None).await.map_err(StoreError::Migrate);
    }
    let mut opts = ConnectOptions::new(url.expose_secret().to_owned());
    opts.sqlx_logging(false)
        .min_connections(1)
        .max_connections(1)
        .connect_timeout(std::time::Duration::from_secs(5));
    let lock_db = Database::connect(opts).await.map_err(StoreError::Connect)?;
    let result = migrate_locked(&lock_db).await;
    let _ = lock_db.close().await;
    result
}

async fn migrate_locked(lock_db: &DatabaseConnection) -> Result<(), StoreError> {
    lock_db
        .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
        .await
        .map_err(StoreError::Migrate)?;
    tracing::debug!("migration lock taken");
    let result = Migrator::up(lock_db, None)
        .await
        .map_err(StoreError::Migrate);
    lock_db
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
        .await
        .map_err(StoreError::Migrate)?;
    result
}

/// A cheap round trip (`SELECT 1`), for the health ping.
pub async fn ping(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}
