//! Persistence: the database connection, migrations at startup, and queries per table.

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::{ExposeSecret, SecretString};

use migration::{Migrator, MigratorTrait};

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
        .connect_timeout(std::time::Duration::from_secs(5));
    let db = Database::connect(opts).await.map_err(StoreError::Connect)?;
    Migrator::up(&db, None).await.map_err(StoreError::Migrate)?;
    Ok(db)
}
