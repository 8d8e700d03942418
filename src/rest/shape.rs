//! REST items in the WebSocket item shape of their topic, where Bybit's names differ, so a
//! consumer parses one shape per topic. Executions, orders, positions and the wallet use the
//! same field names on both sides and pass unchanged; recent trades do not.

use serde_json::{Map, Value};

/// A `/v5/market/recent-trade` item as a `publicTrade` item: `execId`→`i`, `time`→`T` (number),
/// `symbol`→`s`, `side`→`S`, `size`→`v`, `price`→`p`, `isBlockTrade`→`BT`, `isRPITrade`→`RPI`,
/// `seq` (number). Fields REST does not carry (`L`, the tick direction) are left out.
pub fn recent_trade_to_ws(item: &Value) -> Value {
    let mut out = Map::new();
    let mut copy = |from: &str, to: &str| {
        if let Some(v) = item.get(from) {
            out.insert(to.to_owned(), v.clone());
        }
    };
    copy("symbol", "s");
    copy("side", "S");
    copy("size", "v");
    copy("price", "p");
    copy("execId", "i");
    copy("isBlockTrade", "BT");
    copy("isRPITrade", "RPI");
    if let Some(t) = super::time_field(item, "time") {
        out.insert("T".into(), Value::from(t));
    }
    if let Some(seq) = super::time_field(item, "seq") {
        out.insert("seq".into(), Value::from(seq));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rest_trade_becomes_a_websocket_trade() {
        let rest = json!({"execId": "2100000000007764263", "symbol": "BTCUSDT", "price": "16618.49",
            "size": "0.00012", "side": "Buy", "time": "1672052955758", "isBlockTrade": false,
            "isRPITrade": false, "seq": "457514743450"});
        assert_eq!(
            recent_trade_to_ws(&rest),
            json!({"T": 1_672_052_955_758_u64, "s": "BTCUSDT", "S": "Buy", "v": "0.00012",
                "p": "16618.49", "i": "2100000000007764263", "BT": false, "RPI": false,
                "seq": 457_514_743_450_u64})
        );
    }
}
