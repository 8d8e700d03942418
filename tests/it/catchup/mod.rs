//! Issue 13: the REST catch-up after private reconnects and restarts, the gate that holds live
//! private frames meanwhile, snapshots, and REST failures. Shared helpers here.

mod gap;
mod rest_down;
mod restart;
mod snapshot;

use std::collections::HashMap;

use serde_json::Value;

use crate::support::amqp::{Received, collect, consume, open};

/// Every message of `queue` that arrives within `deadline` of the last one (auto-acked).
pub async fn drain(url: &str, queue: &str, deadline: std::time::Duration) -> Vec<Value> {
    let (conn, ch) = open(url).await;
    let mut rx = consume(&ch, queue).await;
    let got: Vec<Received> = collect(&mut rx, 1_000_000, deadline).await;
    let _ = conn.close().await;
    got.iter().map(Received::json).collect()
}

/// The items of every envelope, with the envelope beside each.
pub fn items(envelopes: &[Value]) -> Vec<(Value, Value)> {
    envelopes
        .iter()
        .flat_map(|e| {
            e["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |i| (e.clone(), i))
        })
        .collect()
}

/// How often each value of `field` occurs among `items`.
pub fn counts(items: &[(Value, Value)], id: impl Fn(&Value) -> String) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (_, item) in items {
        *out.entry(id(item)).or_insert(0) += 1;
    }
    out
}

/// An order update's identity (orderId, updatedTime, status, filled quantity).
pub fn order_id(item: &Value) -> String {
    format!(
        "{}:{}:{}:{}",
        item["orderId"].as_str().unwrap_or(""),
        item["updatedTime"].as_str().unwrap_or(""),
        item["orderStatus"].as_str().unwrap_or(""),
        item["cumExecQty"].as_str().unwrap_or("")
    )
}

/// An execution's identity.
pub fn exec_id(item: &Value) -> String {
    item["execId"].as_str().unwrap_or("").to_owned()
}
