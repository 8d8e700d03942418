//! Bybit `wallet` data → `account_balances` rows: one per coin per event.
//!
//! Wire shape (private stream, topic `wallet`, docs:
//! <https://bybit-exchange.github.io/docs/v5/websocket/private/wallet>); `data` is an array of
//! accounts, each with account-level totals and a `coin` array. Every number is a string, often
//! `""` (→ `NULL`):
//! ```json
//! [{"accountType":"UNIFIED","totalEquity":"100.27419876","accountIMRate":"0",
//!   "coin":[{"coin":"BTC","equity":"0.0003058","walletBalance":"0.0003058",
//!            "availableToWithdraw":"0.0003058","usdValue":"11.30798592","locked":"0", …}], …}]
//! ```

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::{event::Event, store::balances::NewBalance};

/// A wallet event whose data is not the documented shape.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("wallet data is not the documented JSON shape: {0}")]
    Shape(#[source] serde_json::Error),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BybitAccount {
    account_type: Option<String>,
    #[serde(rename = "accountIMRate")]
    account_im_rate: Option<String>,
    #[serde(rename = "accountMMRate")]
    account_mm_rate: Option<String>,
    #[serde(rename = "accountLTV")]
    account_ltv: Option<String>,
    total_equity: Option<String>,
    total_wallet_balance: Option<String>,
    total_margin_balance: Option<String>,
    total_available_balance: Option<String>,
    #[serde(rename = "totalPerpUPL")]
    total_perp_upl: Option<String>,
    total_initial_margin: Option<String>,
    total_maintenance_margin: Option<String>,
    #[serde(default)]
    coin: Vec<BybitCoin>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BybitCoin {
    coin: String,
    equity: Option<String>,
    usd_value: Option<String>,
    wallet_balance: Option<String>,
    available_to_withdraw: Option<String>,
    /// Classic spot accounts report `free` instead of `availableToWithdraw`.
    free: Option<String>,
    borrow_amount: Option<String>,
    #[serde(rename = "totalOrderIM")]
    total_order_im: Option<String>,
    #[serde(rename = "totalPositionIM")]
    total_position_im: Option<String>,
    #[serde(rename = "totalPositionMM")]
    total_position_mm: Option<String>,
    unrealised_pnl: Option<String>,
    cum_realised_pnl: Option<String>,
    locked: Option<String>,
}

/// `""`, absent or unparsable → `None` (logged at DEBUG; a number we cannot read is not money).
fn dec(s: &Option<String>) -> Option<Decimal> {
    let s = s.as_deref()?.trim();
    if s.is_empty() {
        return None;
    }
    match Decimal::from_str(s).or_else(|_| Decimal::from_scientific(s)) {
        Ok(d) => Some(d),
        Err(error) => {
            tracing::debug!(value = s, %error, "Wallet field is not a decimal; stored as NULL.");
            None
        }
    }
}

/// The rows of one wallet event.
pub fn rows(event: &Event) -> Result<Vec<NewBalance>, WalletError> {
    let accounts: Vec<BybitAccount> =
        serde_json::from_slice(event.data()).map_err(WalletError::Shape)?;
    let event_id = event.id.to_string();
    let mut out = Vec::new();
    for a in accounts {
        for c in &a.coin {
            let available_to_withdraw = dec(&c.available_to_withdraw);
            out.push(NewBalance {
                id: 0,
                event_id: event_id.clone(),
                trace_id: event.trace_id.to_string(),
                account_type: a.account_type.clone(),
                coin: c.coin.clone(),
                wallet_balance: dec(&c.wallet_balance),
                equity: dec(&c.equity),
                available: available_to_withdraw.or_else(|| dec(&c.free)),
                available_to_withdraw,
                usd_value: dec(&c.usd_value),
                unrealised_pnl: dec(&c.unrealised_pnl),
                cum_realised_pnl: dec(&c.cum_realised_pnl),
                total_position_im: dec(&c.total_position_im),
                total_position_mm: dec(&c.total_position_mm),
                total_order_im: dec(&c.total_order_im),
                locked: dec(&c.locked),
                borrow_amount: dec(&c.borrow_amount),
                total_equity: dec(&a.total_equity),
                total_wallet_balance: dec(&a.total_wallet_balance),
                total_margin_balance: dec(&a.total_margin_balance),
                total_available_balance: dec(&a.total_available_balance),
                total_initial_margin: dec(&a.total_initial_margin),
                total_maintenance_margin: dec(&a.total_maintenance_margin),
                total_perp_upl: dec(&a.total_perp_upl),
                account_im_rate: dec(&a.account_im_rate),
                account_mm_rate: dec(&a.account_mm_rate),
                account_ltv: dec(&a.account_ltv),
                exchange_ts: event.exchange_ts,
                received_at: event.received_at,
            });
        }
    }
    Ok(out)
}

/// Builds the [`Event`] the pipeline would emit for a Bybit wallet frame (tests and benches:
/// the sink only reads `id`, `trace_id`, `exchange_ts`, `received_at` and `data`).
pub fn event_from_frame(frame: &str) -> Option<Event> {
    let v: serde_json::Value = serde_json::from_str(frame).ok()?;
    let data = serde_json::to_string(v.get("data")?).ok()?;
    let exchange_ts = v.get("creationTime").and_then(serde_json::Value::as_i64);
    let prefix = r#"{"class":"balances","topic":"wallet","data":"#;
    let json = format!("{prefix}{data}}}");
    let start = prefix.len();
    Some(Event {
        id: uuid::Uuid::now_v7(),
        trace_id: uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .as_str()
            .try_into()
            .ok()?,
        class: crate::event::EventClass::Balances,
        topic: "wallet".into(),
        endpoint: crate::event::Endpoint::Private,
        category: None,
        symbol: None,
        kind: None,
        exchange_ts,
        received_at: chrono::Utc::now(),
        received_mono: std::time::Instant::now(),
        seq: 1,
        key: crate::event::EventKey::Text(
            v.get("id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .into(),
        ),
        recovered: false,
        json: bytes::Bytes::from(json),
        data: start..start + data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIFIED: &str = include_str!("../../../tests/fixtures/bybit/wallet.json");
    const CONTRACT: &str =
        include_str!("../../../tests/fixtures/bybit/wallet_classic_contract.json");

    #[test]
    fn unified_wallet_becomes_one_exact_row_per_coin() {
        let event = event_from_frame(UNIFIED).unwrap();
        let rows = rows(&event).unwrap();
        assert_eq!(rows.len(), 3);
        let usdt = rows.iter().find(|r| r.coin == "USDT").unwrap();
        assert_eq!(usdt.wallet_balance.unwrap().to_string(), "88.94040055");
        assert_eq!(usdt.cum_realised_pnl.unwrap().to_string(), "-0.17895808");
        assert_eq!(usdt.total_equity.unwrap().to_string(), "100.27419876");
        assert_eq!(usdt.account_type.as_deref(), Some("UNIFIED"));
        assert_eq!(usdt.exchange_ts, Some(1699764599844));
        assert!(rows.iter().all(|r| r.event_id == event.id.to_string()));
    }

    #[test]
    fn empty_strings_become_null() {
        let rows = rows(&event_from_frame(CONTRACT).unwrap()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].total_equity, None);
        assert_eq!(rows[0].usd_value, None);
        assert_eq!(rows[0].total_order_im.unwrap().to_string(), "188.6517014");
    }

    #[test]
    fn data_of_another_shape_is_an_error_not_a_panic() {
        let mut event = event_from_frame(UNIFIED).unwrap();
        event.json = bytes::Bytes::from_static(b"{\"x\":1}");
        event.data = 5..6;
        assert!(rows(&event).is_err());
    }
}
