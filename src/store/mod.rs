//! Persistence: the database connection, migrations at startup, entities ([`entity`]) and
//! queries per table (`subscriptions`, [`balances`]).

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use secrecy::{ExposeSecret, SecretString};

use migration::{Migrator, MigratorTrait};

pub mod balances;
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
    Migrator::up(&db, None).await.map_err(StoreError::Migrate)?;
    Ok(db)
}

/// A cheap round trip (`SELECT 1`), for the health ping.
pub async fn ping(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    db.execute_unprepared("SELECT 1").await.map(|_| ())
}
