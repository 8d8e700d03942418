//! `cluster_leases.trade_mark_id` / `trade_mark_time`: the last public trade the owner of a
//! `publicTrade` lease emitted (written about every half second, fenced by owner and epoch), so
//! the instance that claims the lease after the owner died recovers the trades since over REST.
//! PostgreSQL only, like the rest of the cluster tables.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
ALTER TABLE cluster_leases ADD COLUMN IF NOT EXISTS trade_mark_id VARCHAR(64);
ALTER TABLE cluster_leases ADD COLUMN IF NOT EXISTS trade_mark_time BIGINT;
";

const DOWN: &str = "
ALTER TABLE cluster_leases DROP COLUMN IF EXISTS trade_mark_time;
ALTER TABLE cluster_leases DROP COLUMN IF EXISTS trade_mark_id;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::on_postgres(manager, DOWN).await
    }
}
