//! `connect_grants`: the cluster-wide budgets of Bybit calls (spec section 11, "shared
//! limits"), new WebSocket connections (`kind = 'connect'`) and, when wired, REST weight
//! (`kind = 'rest'`). One row per grant to an instance, with its `weight`; the grants
//! younger than the window are the budget spent. Rows a minute older than the window are deleted
//! by the instances as they grant.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConnectGrants {
    Table,
    Id,
    Kind,
    InstanceId,
    Weight,
    GrantedAt,
}

const INDEX: &str = "idx_connect_grants_kind_granted_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConnectGrants::Table)
                    .col(
                        ColumnDef::new(ConnectGrants::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ConnectGrants::Kind)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConnectGrants::InstanceId)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ConnectGrants::Weight)
                            .integer()
                            .not_null()
                            .default(1),
                    )
                    .col(
                        ColumnDef::new(ConnectGrants::GrantedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(ConnectGrants::Table)
                    .col(ConnectGrants::Kind)
                    .col(ConnectGrants::GrantedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConnectGrants::Table).to_owned())
            .await
    }
}
