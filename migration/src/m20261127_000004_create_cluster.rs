//! The cluster control plane (spec section 11; PostgreSQL only, nothing on SQLite where the
//! cluster mode is refused):
//! - `cluster_instances`: who is alive (heartbeat `last_seen`, judged by the database clock);
//! - `cluster_desired`: the units each instance wants (its `/ws` and pipeline-file topics,
//!   mirrored); API subscriptions are read from `subscriptions` itself;
//! - `cluster_leases`: per unit (`private`, or `<category>|<topic>`), its owner, the fencing
//!   `epoch` (incremented on every change of owner), `expires_at`, the instance a planned move
//!   hands it to (`handover_to`) and whether that one is subscribed already (`handover_ready`);
//!   `status` / `status_message` are unused (the owner writes each topic's status to the
//!   `subscriptions` rows themselves, `cluster::status`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
CREATE TABLE IF NOT EXISTS cluster_instances (
    id VARCHAR(64) PRIMARY KEY,
    api_addr VARCHAR(128) NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cluster_desired (
    instance_id VARCHAR(64) NOT NULL,
    unit VARCHAR(300) NOT NULL,
    PRIMARY KEY (instance_id, unit)
);
CREATE TABLE IF NOT EXISTS cluster_leases (
    unit VARCHAR(300) PRIMARY KEY,
    owner VARCHAR(64),
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    handover_to VARCHAR(64),
    handover_ready BOOLEAN NOT NULL DEFAULT FALSE,
    status VARCHAR(32),
    status_message TEXT
);
CREATE INDEX IF NOT EXISTS cluster_leases_owner ON cluster_leases (owner);
";

const DOWN: &str = "
DROP TABLE IF EXISTS cluster_leases;
DROP TABLE IF EXISTS cluster_desired;
DROP TABLE IF EXISTS cluster_instances;
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
