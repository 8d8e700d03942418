//! `subscriptions`: the REST API's subscriptions (spec sections 6 and 8). At most one active row
//! per (category, topic, requesting_service): a partial unique index over
//! `COALESCE(category, '')` (private all-in-one topics have no category, and NULLs never collide
//! in a unique index), valid on both PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    Id,
    ChannelType,
    Category,
    Symbol,
    Depth,
    Interval,
    Topic,
    Endpoint,
    RequestingService,
    IsActive,
    Status,
    StatusMessage,
    CreatedAt,
    UpdatedAt,
    LastEventAt,
}

const ACTIVE_UNIQUE: &str = "CREATE UNIQUE INDEX ux_subscriptions_active \
     ON subscriptions (COALESCE(category, ''), topic, requesting_service) WHERE is_active";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Subscriptions::Table)
                    .col(
                        ColumnDef::new(Subscriptions::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::ChannelType)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::Category)
                            .string_len(16)
                            .null(),
                    )
                    .col(ColumnDef::new(Subscriptions::Symbol).string_len(64).null())
                    .col(ColumnDef::new(Subscriptions::Depth).integer().null())
                    .col(ColumnDef::new(Subscriptions::Interval).string_len(8).null())
                    .col(
                        ColumnDef::new(Subscriptions::Topic)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::Endpoint)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::RequestingService)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Subscriptions::IsActive).boolean().not_null())
                    .col(
                        ColumnDef::new(Subscriptions::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Subscriptions::StatusMessage).text().null())
                    .col(
                        ColumnDef::new(Subscriptions::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Subscriptions::LastEventAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_subscriptions_service")
                    .table(Subscriptions::Table)
                    .col(Subscriptions::RequestingService)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(ACTIVE_UNIQUE)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Subscriptions::Table).to_owned())
            .await
    }
}
