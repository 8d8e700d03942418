//! `catchup_cursors`: per private topic, how far the gateway has published with the broker's
//! confirm (spec section 10): the exchange time (ms) of the newest confirmed item and the
//! identities of the items at that time (a JSON array of strings). One row per topic.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CatchupCursors {
    Table,
    Topic,
    ExchangeTs,
    Ids,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CatchupCursors::Table)
                    .col(
                        ColumnDef::new(CatchupCursors::Topic)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(CatchupCursors::ExchangeTs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(CatchupCursors::Ids).text().not_null())
                    .col(
                        ColumnDef::new(CatchupCursors::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CatchupCursors::Table).to_owned())
            .await
    }
}
