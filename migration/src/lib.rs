//! Schema migrations of ws-gateway (sea-orm-migration). Run at startup by `store::connect`, or
//! by hand: `cargo run -p migration -- up|down|status` with `DATABASE_URL` set.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_subscriptions;
mod m20261123_000002_create_account_balances;
mod m20261127_000003_create_catchup_cursors;
mod m20261127_000004_create_cluster;
mod m20261127_000005_create_connect_grants;
mod m20261127_000006_add_lease_trade_marks;

/// Runs `sql` (several statements) on PostgreSQL; nothing elsewhere (the cluster tables exist
/// only there, the cluster mode is refused on SQLite).
async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm_migration::sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    manager.get_connection().execute_unprepared(sql).await?;
    Ok(())
}

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_subscriptions::Migration),
            Box::new(m20261123_000002_create_account_balances::Migration),
            Box::new(m20261127_000003_create_catchup_cursors::Migration),
            Box::new(m20261127_000004_create_cluster::Migration),
            Box::new(m20261127_000005_create_connect_grants::Migration),
            Box::new(m20261127_000006_add_lease_trade_marks::Migration),
        ]
    }
}
