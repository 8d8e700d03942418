//! `/api/v1/balances`: the latest balance per coin with the account's margin view, and the
//! balance history. Decimals are strings, exactly as Bybit sent them.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};

use super::{
    ApiKey, ApiTags,
    error::{ErrorBody, ErrorResponse, error_response},
    nullable::Nullable,
};
use crate::{
    state::AppState,
    store::balances::{self as q, BalanceRecord},
};

/// One `account_balances` row as the API shows it (schema `BalanceRow`): the store's read type.
pub type BalanceRow = BalanceRecord;

/// Account-level margin view, from the newest wallet event.
#[derive(Debug, Clone, Object)]
pub struct Margin {
    #[oai(nullable)]
    pub account_type: Option<String>,
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
    pub account_im_rate: Option<String>,
    #[oai(nullable)]
    pub account_mm_rate: Option<String>,
    #[oai(nullable)]
    pub exchange_ts: Option<i64>,
}

impl From<BalanceRecord> for Margin {
    fn from(r: BalanceRecord) -> Self {
        Self {
            account_type: r.account_type,
            total_equity: r.total_equity,
            total_wallet_balance: r.total_wallet_balance,
            total_margin_balance: r.total_margin_balance,
            total_available_balance: r.total_available_balance,
            total_initial_margin: r.total_initial_margin,
            total_maintenance_margin: r.total_maintenance_margin,
            account_im_rate: r.account_im_rate,
            account_mm_rate: r.account_mm_rate,
            exchange_ts: r.exchange_ts,
        }
    }
}

/// `GET /api/v1/balances` result.
#[derive(Debug, Clone, Object)]
pub struct Balances {
    /// The newest row of each coin, by coin name.
    pub balances: Vec<BalanceRow>,
    /// `null` until the first wallet event.
    pub margin: Nullable<Box<Margin>>,
}

/// The balance operations.
#[derive(Debug, Default)]
pub struct BalancesApi;

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "latest_bad_request")]
enum LatestResponse {
    /// Latest balances and margin.
    #[oai(status = 200)]
    Ok(Json<Balances>),
    /// `limit` is out of range.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `X-API-Key`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The database failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database does not answer (`database_unavailable`); retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
error_response!(LatestResponse, latest_bad_request);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "history_bad_request")]
enum HistoryResponse {
    /// Rows, newest first.
    #[oai(status = 200)]
    Ok(Json<Vec<BalanceRow>>),
    /// A parameter is invalid (`from`/`to` are RFC 3339, `limit` 1..=1000).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `X-API-Key`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The database failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database does not answer (`database_unavailable`); retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
error_response!(HistoryResponse, history_bad_request);

#[OpenApi(prefix_path = "/api/v1/balances", tag = "ApiTags::Balances")]
impl BalancesApi {
    /// The latest balance of each coin and the account's margin summary.
    #[oai(path = "/", method = "get", operation_id = "latest_balances")]
    async fn latest(
        &self,
        state: Data<&AppState>,
        _key: ApiKey,
        /// At most this many coins (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
    ) -> LatestResponse {
        let result = async {
            let rows = q::latest_per_coin(&state.db, limit.0.unwrap_or(100)).await?;
            let margin = q::latest(&state.db).await?;
            Ok::<_, sea_orm::DbErr>(Balances {
                balances: rows,
                margin: margin.map(|m| Box::new(m.into())).into(),
            })
        };
        match result.await {
            Ok(b) => LatestResponse::Ok(Json(b)),
            Err(e) => LatestResponse::from_api_error(e.into()),
        }
    }

    /// Balance rows, newest first, optionally of one coin and within `[from, to]` (receipt
    /// time, RFC 3339).
    #[oai(path = "/history", method = "get", operation_id = "balance_history")]
    async fn history(
        &self,
        state: Data<&AppState>,
        _key: ApiKey,
        /// Coin, e.g. `USDT`.
        coin: Query<Option<String>>,
        /// Earliest receipt time (inclusive).
        from: Query<Option<DateTime<Utc>>>,
        /// Latest receipt time (inclusive).
        to: Query<Option<DateTime<Utc>>>,
        /// Rows at most (default 100, max 1000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
    ) -> HistoryResponse {
        let rows = q::history(
            &state.db,
            coin.0.as_deref(),
            from.0,
            to.0,
            limit.0.unwrap_or(100),
        )
        .await;
        match rows {
            Ok(rows) => HistoryResponse::Ok(Json(rows)),
            Err(e) => HistoryResponse::from_api_error(e.into()),
        }
    }
}
