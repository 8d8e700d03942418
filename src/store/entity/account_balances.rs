//! `account_balances`: one row per coin per wallet event. Money columns are `Option<Decimal>`
//! for writing; reads go through [`crate::store::balances`], which casts them to text so that
//! SQLite (where they are `TEXT`) and PostgreSQL (`NUMERIC`) both come back exact.

use sea_orm::entity::prelude::*;

/// A balance row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "account_balances")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub event_id: String,
    pub trace_id: String,
    pub account_type: Option<String>,
    pub coin: String,
    pub wallet_balance: Option<Decimal>,
    pub equity: Option<Decimal>,
    pub available_to_withdraw: Option<Decimal>,
    pub available: Option<Decimal>,
    pub usd_value: Option<Decimal>,
    pub unrealised_pnl: Option<Decimal>,
    pub cum_realised_pnl: Option<Decimal>,
    pub total_position_im: Option<Decimal>,
    pub total_position_mm: Option<Decimal>,
    pub total_order_im: Option<Decimal>,
    pub locked: Option<Decimal>,
    pub borrow_amount: Option<Decimal>,
    pub total_equity: Option<Decimal>,
    pub total_wallet_balance: Option<Decimal>,
    pub total_margin_balance: Option<Decimal>,
    pub total_available_balance: Option<Decimal>,
    pub total_initial_margin: Option<Decimal>,
    pub total_maintenance_margin: Option<Decimal>,
    pub total_perp_upl: Option<Decimal>,
    pub account_im_rate: Option<Decimal>,
    pub account_mm_rate: Option<Decimal>,
    pub account_ltv: Option<Decimal>,
    /// Bybit's `creationTime` (ms).
    pub exchange_ts: Option<i64>,
    pub received_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
