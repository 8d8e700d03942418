//! Private items and their identities (spec section 10, "No repeats"): what makes an execution
//! or an order update the same item whether it came live or over REST, its exchange time (the
//! cursor's unit), the envelope `key` of a recovered item, and the synthetic frame a recovered
//! item travels in.

use std::hash::{Hash, Hasher};

use serde_json::Value;

use crate::rest::time_field;

/// The private topic families the catch-up knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Execution,
    Order,
    Position,
    Wallet,
}

impl Family {
    /// The family of a private topic (`execution`, `execution.linear`, `order.spot`,
    /// `wallet`); `None` for others (`execution.fast` has another item shape, `greeks`, ...).
    pub fn of(topic: &str) -> Option<Self> {
        let mut parts = topic.split('.');
        let base = parts.next()?;
        let rest = parts.next();
        if rest == Some("fast") {
            return None;
        }
        match base {
            "execution" => Some(Self::Execution),
            "order" => Some(Self::Order),
            "position" => Some(Self::Position),
            "wallet" if rest.is_none() => Some(Self::Wallet),
            _ => None,
        }
    }

    /// Metric label and key prefix.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Execution => "execution",
            Self::Order => "order",
            Self::Position => "position",
            Self::Wallet => "wallet",
        }
    }

    /// Whether items of this family are caught up from a cursor (the others are snapshots).
    pub const fn has_cursor(self) -> bool {
        matches!(self, Self::Execution | Self::Order)
    }
}

/// An item's place in its topic: exchange time (ms) and identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemId {
    /// `execTime` (executions), `updatedTime` (orders).
    pub ts: i64,
    /// `execId`; `orderId:updatedTime:orderStatus:cumExecQty` (an order's updates in one
    /// millisecond differ by status or filled quantity).
    pub id: String,
}

fn text<'a>(item: &'a Value, field: &str) -> Option<&'a str> {
    item.get(field).and_then(Value::as_str)
}

/// The identity of an execution or order item; `None` for snapshots or an item without ids.
pub fn item_id(family: Family, item: &Value) -> Option<ItemId> {
    match family {
        Family::Execution => Some(ItemId {
            ts: i64::try_from(time_field(item, "execTime")?).ok()?,
            id: text(item, "execId")?.to_owned(),
        }),
        Family::Order => {
            let ts = i64::try_from(time_field(item, "updatedTime")?).ok()?;
            Some(ItemId {
                ts,
                id: format!(
                    "{}:{ts}:{}:{}",
                    text(item, "orderId")?,
                    text(item, "orderStatus").unwrap_or(""),
                    text(item, "cumExecQty").unwrap_or("")
                ),
            })
        }
        Family::Position | Family::Wallet => None,
    }
}

/// The envelope `key` of a recovered item (spec section 5).
pub fn recovered_key(family: Family, category: &str, item: &Value) -> String {
    match family {
        Family::Execution => format!("execution:{}", text(item, "execId").unwrap_or("")),
        Family::Order => format!(
            "order:{}:{}",
            text(item, "orderId").unwrap_or(""),
            time_field(item, "updatedTime").unwrap_or(0)
        ),
        Family::Position => format!(
            "position:{category}:{}:{}",
            text(item, "symbol").unwrap_or(""),
            time_field(item, "updatedTime").unwrap_or(0)
        ),
        Family::Wallet => {
            // Wallet items carry no time: a hash of the content (stable: serde_json keeps
            // object keys sorted).
            let mut h = std::collections::hash_map::DefaultHasher::new();
            item.to_string().hash(&mut h);
            format!(
                "wallet:{}:{:016x}",
                text(item, "accountType").unwrap_or(""),
                h.finish()
            )
        }
    }
}

/// The identities of the items in a live frame's `data`.
pub fn live_ids(family: Family, data: &str) -> Vec<ItemId> {
    match serde_json::from_str::<Vec<Value>>(data) {
        Ok(items) => items.iter().filter_map(|i| item_id(family, i)).collect(),
        Err(_) => Vec::new(),
    }
}

/// The synthetic frame a recovered item travels in: the WebSocket shape, `type` `recovery`,
/// `id` the key, `creationTime` the item's exchange time, `data` `[item]`.
pub fn frame_text(key: &str, topic: &str, ts: i64, item: &Value) -> String {
    serde_json::json!({
        "id": key,
        "topic": topic,
        "type": "recovery",
        "creationTime": ts,
        "data": [item],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn families_follow_the_topic_base() {
        assert_eq!(Family::of("execution"), Some(Family::Execution));
        assert_eq!(Family::of("execution.linear"), Some(Family::Execution));
        assert_eq!(Family::of("execution.fast"), None);
        assert_eq!(Family::of("order.spot"), Some(Family::Order));
        assert_eq!(Family::of("wallet"), Some(Family::Wallet));
        assert_eq!(Family::of("greeks"), None);
    }

    #[test]
    fn identities_and_keys_come_from_the_items_own_fields() {
        let exec = json!({"execId": "e1", "execTime": "1700", "orderId": "o"});
        assert_eq!(
            item_id(Family::Execution, &exec),
            Some(ItemId {
                ts: 1700,
                id: "e1".into()
            })
        );
        assert_eq!(
            recovered_key(Family::Execution, "linear", &exec),
            "execution:e1"
        );
        let order = json!({"orderId": "o1", "updatedTime": "1800", "orderStatus": "Filled",
            "cumExecQty": "0.002"});
        assert_eq!(
            item_id(Family::Order, &order).unwrap().id,
            "o1:1800:Filled:0.002"
        );
        assert_eq!(recovered_key(Family::Order, "", &order), "order:o1:1800");
        let pos = json!({"symbol": "BTCUSDT", "updatedTime": "1900"});
        assert_eq!(
            recovered_key(Family::Position, "linear", &pos),
            "position:linear:BTCUSDT:1900"
        );
        let w = json!({"accountType": "UNIFIED", "totalEquity": "1"});
        let k = recovered_key(Family::Wallet, "", &w);
        assert!(k.starts_with("wallet:UNIFIED:"), "{k}");
        assert_eq!(k, recovered_key(Family::Wallet, "", &w.clone()));
        assert_eq!(item_id(Family::Execution, &json!({"execId": 5})), None);
        assert!(live_ids(Family::Execution, "not json").is_empty());
    }
}
