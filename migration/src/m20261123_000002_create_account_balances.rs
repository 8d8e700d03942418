//! `account_balances`: one row per coin per wallet event (spec section 8). Money is exact:
//! `NUMERIC` on PostgreSQL; on SQLite, whose NUMERIC affinity would turn text into floats, the
//! money columns are `TEXT` holding the decimal string as Bybit sent it. `(event_id, coin)` is
//! unique, so a duplicate delivery of an event inserts nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccountBalances {
    Table,
    Id,
    EventId,
    TraceId,
    AccountType,
    Coin,
    ExchangeTs,
    ReceivedAt,
}

/// The decimal columns, in table order.
const MONEY: [&str; 22] = [
    "wallet_balance",
    "equity",
    "available_to_withdraw",
    "available",
    "usd_value",
    "unrealised_pnl",
    "cum_realised_pnl",
    "total_position_im",
    "total_position_mm",
    "total_order_im",
    "locked",
    "borrow_amount",
    "total_equity",
    "total_wallet_balance",
    "total_margin_balance",
    "total_available_balance",
    "total_initial_margin",
    "total_maintenance_margin",
    "total_perp_upl",
    "account_im_rate",
    "account_mm_rate",
    "account_ltv",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sqlite = manager.get_database_backend() == DatabaseBackend::Sqlite;
        let mut table = Table::create();
        table
            .table(AccountBalances::Table)
            .col(
                ColumnDef::new(AccountBalances::Id)
                    .big_integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(
                ColumnDef::new(AccountBalances::EventId)
                    .string_len(128)
                    .not_null(),
            )
            .col(
                ColumnDef::new(AccountBalances::TraceId)
                    .string_len(32)
                    .not_null(),
            )
            .col(
                ColumnDef::new(AccountBalances::AccountType)
                    .string_len(32)
                    .null(),
            )
            .col(
                ColumnDef::new(AccountBalances::Coin)
                    .string_len(32)
                    .not_null(),
            );
        for name in MONEY {
            let mut col = ColumnDef::new(Alias::new(name));
            if sqlite {
                col.text();
            } else {
                col.decimal();
            }
            table.col(col.null());
        }
        table
            .col(
                ColumnDef::new(AccountBalances::ExchangeTs)
                    .big_integer()
                    .null(),
            )
            .col(
                ColumnDef::new(AccountBalances::ReceivedAt)
                    .timestamp_with_time_zone()
                    .not_null(),
            );
        manager.create_table(table.to_owned()).await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_account_balances_event_coin")
                    .table(AccountBalances::Table)
                    .col(AccountBalances::EventId)
                    .col(AccountBalances::Coin)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_account_balances_coin_received")
                    .table(AccountBalances::Table)
                    .col(AccountBalances::Coin)
                    .col(AccountBalances::ReceivedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AccountBalances::Table).to_owned())
            .await
    }
}
