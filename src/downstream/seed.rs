//! The trade messages of the seed quickstart's browser gateway, for clients that subscribed in
//! the `action` dialect: one message per trade item of a `publicTrade` frame,
//!
//! ```json
//! {"type":"trade","data":{"symbol":"BTCUSDT","price":109378.9,"volume":0.02,
//!  "timestamp":1758841135823,"exchange":"bybit","side":"Buy","tradeId":"2a74…"},
//!  "timestamp":1758841135824}
//! ```
//!
//! Numbers for price, volume and both times (the seed's page does arithmetic on them); the
//! outer `timestamp` is when the gateway sends it, as in the seed. `side`, `tradeId` and
//! `blockTrade` are extras the seed's page ignores. Pure (no I/O), tested inline.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::json;

/// One item of a Bybit `publicTrade` frame's `data` (only what the seed's shape uses).
#[derive(Debug, Deserialize)]
struct BybitTrade<'a> {
    #[serde(rename = "T")]
    time: Option<i64>,
    #[serde(rename = "s", borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(rename = "S", borrow)]
    side: Option<Cow<'a, str>>,
    #[serde(rename = "v", borrow)]
    volume: Option<Cow<'a, str>>,
    #[serde(rename = "p", borrow)]
    price: Option<Cow<'a, str>>,
    #[serde(rename = "i", borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "BT")]
    block_trade: Option<bool>,
}

/// A decimal string as a finite JSON number.
fn number(s: Option<&str>) -> Option<f64> {
    s?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The seed-shaped messages of one `publicTrade` event's `data` (`fallback_symbol` where an item
/// names none), sent at `now_ms`. `None` when `data` is not an array of trades: the caller then
/// sends the envelope rather than nothing. Items without a usable price or volume are skipped.
pub(super) fn trade_messages(
    data: &[u8],
    fallback_symbol: &str,
    now_ms: i64,
) -> Option<Vec<String>> {
    let trades: Vec<BybitTrade<'_>> = serde_json::from_slice(data).ok()?;
    let messages = trades
        .iter()
        .filter_map(|t| {
            let price = number(t.price.as_deref())?;
            let volume = number(t.volume.as_deref())?;
            let mut item = json!({
                "symbol": t.symbol.as_deref().unwrap_or(fallback_symbol),
                "price": price,
                "volume": volume,
                "timestamp": t.time.unwrap_or(now_ms),
                "exchange": "bybit",
            });
            if let Some(side) = &t.side {
                item["side"] = json!(side);
            }
            if let Some(id) = &t.id {
                item["tradeId"] = json!(id);
            }
            if let Some(bt) = t.block_trade {
                item["blockTrade"] = json!(bt);
            }
            Some(json!({"type": "trade", "data": item, "timestamp": now_ms}).to_string())
        })
        .collect();
    Some(messages)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::trade_messages;

    #[test]
    fn one_seed_message_per_trade_item_with_numbers() {
        let data = br#"[{"i":"1","T":1761520812163,"p":"114513.1","v":"0.00862","S":"Sell","s":"BTCUSDC","BT":false},
            {"i":"2","T":1761520812164,"p":"114513.2","v":"1","S":"Buy","s":"BTCUSDC"},
            {"i":"3","T":1,"p":"not a number","v":"1","s":"BTCUSDC"}]"#;
        let out = trade_messages(data, "X", 42).unwrap();
        assert_eq!(out.len(), 2, "the item without a price is skipped");
        let first: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(
            first,
            json!({"type":"trade","timestamp":42,"data":{"symbol":"BTCUSDC","price":114513.1,
                "volume":0.00862,"timestamp":1761520812163_i64,"exchange":"bybit","side":"Sell",
                "tradeId":"1","blockTrade":false}})
        );
        let second: Value = serde_json::from_str(&out[1]).unwrap();
        assert_eq!(second["data"]["price"], 114513.2);
        assert_eq!(second["data"]["tradeId"], "2");
    }

    #[test]
    fn data_that_is_not_a_trade_array_is_not_rendered() {
        assert!(trade_messages(br#"{"a":1}"#, "X", 1).is_none());
        assert!(trade_messages(b"not json", "X", 1).is_none());
        assert_eq!(trade_messages(b"[]", "X", 1), Some(vec![]));
        let out = trade_messages(br#"[{"p":"1","v":"2"}]"#, "ETHUSDT", 5).unwrap();
        let v: Value = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(v["data"]["symbol"], "ETHUSDT");
        assert_eq!(v["data"]["timestamp"], 5);
    }
}
