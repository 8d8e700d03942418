//! Queries on `account_balances`: batched idempotent inserts (the persistence sink) and the
//! reads behind `GET /api/v1/balances[/history]`.
//!
//! Reads cast every money column to text, so both backends return the exact decimal string
//! (PostgreSQL `NUMERIC` → text; on SQLite the column already is text).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, EntityTrait, FromQueryResult, IntoActiveModel,
    sea_query::{Alias, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement},
};

use super::entity::account_balances::{ActiveModel, Column, Entity, Model};

/// One row to insert, a coin of one wallet event: the entity's model, whose `id` is ignored on
/// insert (the database assigns it; build it with `id: 0`).
pub type NewBalance = Model;

/// Inserts rows in one statement; rows whose (event_id, coin) exists are skipped.
pub async fn insert_many(
    db: &impl ConnectionTrait,
    rows: &[NewBalance],
) -> Result<(), sea_orm::DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let models = rows.iter().cloned().map(|row| {
        let mut model: ActiveModel = row.into_active_model().reset_all();
        model.id = sea_orm::NotSet;
        model
    });
    Entity::insert_many(models)
        .on_conflict(
            OnConflict::columns([Column::EventId, Column::Coin])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

// Read back by the queries below and shown as is by the API (schema `BalanceRow`).
/// One `account_balances` row; money as exact decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, poem_openapi::Object)]
#[oai(rename = "BalanceRow")]
pub struct BalanceRecord {
    pub id: i64,
    /// The gateway event id the row came from.
    pub event_id: String,
    pub trace_id: String,
    /// `UNIFIED`, `CONTRACT`, `SPOT`, …
    #[oai(nullable)]
    pub account_type: Option<String>,
    pub coin: String,
    #[oai(nullable)]
    pub wallet_balance: Option<String>,
    #[oai(nullable)]
    pub equity: Option<String>,
    #[oai(nullable)]
    pub available_to_withdraw: Option<String>,
    /// `availableToWithdraw`, or `free` for classic spot accounts.
    #[oai(nullable)]
    pub available: Option<String>,
    #[oai(nullable)]
    pub usd_value: Option<String>,
    #[oai(nullable)]
    pub unrealised_pnl: Option<String>,
    #[oai(nullable)]
    pub cum_realised_pnl: Option<String>,
    #[oai(nullable)]
    pub total_position_im: Option<String>,
    #[oai(nullable)]
    pub total_position_mm: Option<String>,
    #[oai(nullable)]
    pub total_order_im: Option<String>,
    #[oai(nullable)]
    pub locked: Option<String>,
    #[oai(nullable)]
    pub borrow_amount: Option<String>,
    #[oai(nullable)]
    pub total_equity: Option<String>,
    #[oai(nullable)]
    pub total_wallet_balance: Option<String>,
    #[oai(nullable)]
    pub total_margin_balance: Option<String>,
    #[oai(nullable)]
    pub total_available_balance: Option<String>,
    #[oai(nullable)]
    pub total_initial_margin: Option<String>,
    #[oai(nullable)]
    pub total_maintenance_margin: Option<String>,
    #[oai(nullable)]
    pub total_perp_upl: Option<String>,
    #[oai(nullable)]
    pub account_im_rate: Option<String>,
    #[oai(nullable)]
    pub account_mm_rate: Option<String>,
    #[oai(nullable)]
    pub account_ltv: Option<String>,
    /// Bybit's `creationTime`, ms.
    #[oai(nullable)]
    pub exchange_ts: Option<i64>,
    pub received_at: DateTime<Utc>,
}

const PLAIN: [&str; 5] = ["id", "event_id", "trace_id", "account_type", "coin"];
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

fn select() -> SelectStatement {
    let mut q = Query::select();
    q.from(Entity);
    for c in PLAIN.iter().chain(&["exchange_ts", "received_at"]) {
        q.column(Alias::new(*c));
    }
    for c in MONEY {
        q.expr_as(Expr::cust(format!("CAST({c} AS TEXT)")), Alias::new(c));
    }
    q
}

async fn fetch(
    db: &impl ConnectionTrait,
    q: &SelectStatement,
) -> Result<Vec<BalanceRecord>, sea_orm::DbErr> {
    let stmt = db.get_database_backend().build(q);
    BalanceRecord::find_by_statement(stmt).all(db).await
}

/// The newest row of each coin (at most `limit` coins, by coin name).
pub async fn latest_per_coin(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<BalanceRecord>, sea_orm::DbErr> {
    let mut newest = Query::select();
    newest
        .expr(Expr::cust("MAX(id)"))
        .from(Entity)
        .group_by_col(Column::Coin);
    let mut q = select();
    q.and_where(Expr::col(Column::Id).in_subquery(newest))
        .order_by(Column::Coin, Order::Asc)
        .limit(limit);
    fetch(db, &q).await
}

/// The newest row of all (its account-level totals are the margin view).
pub async fn latest(db: &impl ConnectionTrait) -> Result<Option<BalanceRecord>, sea_orm::DbErr> {
    let mut q = select();
    q.order_by(Column::Id, Order::Desc).limit(1);
    Ok(fetch(db, &q).await?.into_iter().next())
}

/// Rows of `coin` (any if `None`) received in `[from, to]`, newest first.
pub async fn history(
    db: &impl ConnectionTrait,
    coin: Option<&str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<BalanceRecord>, sea_orm::DbErr> {
    let mut q = select();
    if let Some(coin) = coin {
        q.and_where(Expr::col(Column::Coin).eq(coin));
    }
    if let Some(from) = from {
        q.and_where(Expr::col(Column::ReceivedAt).gte(from));
    }
    if let Some(to) = to {
        q.and_where(Expr::col(Column::ReceivedAt).lte(to));
    }
    q.order_by(Column::ReceivedAt, Order::Desc)
        .order_by(Column::Id, Order::Desc)
        .limit(limit);
    fetch(db, &q).await
}

/// Number of rows (tests, diagnostics).
pub async fn count(db: &impl ConnectionTrait) -> Result<u64, sea_orm::DbErr> {
    use sea_orm::PaginatorTrait;
    Entity::find().count(db).await
}
