//! The REST calls of one catch-up: executions (`/v5/execution/list`) and order updates
//! (`/v5/order/history` + `/v5/order/realtime`) from each topic's cursor to now, positions and
//! the wallet as snapshots; for every category a topic covers. Executions, orders, positions
//! and the wallet have the same field names over REST and WebSocket (`rest::shape`), so items
//! pass unchanged.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::items::{self, Family, ItemId};
use crate::{
    event::Category,
    pipeline_file::CatchupConfig,
    rest::{RestClient, RestError, time_field},
};

/// One recovered item, ready for its frame.
#[derive(Debug, Clone)]
pub struct Item {
    /// The envelope `key`.
    pub key: String,
    /// Exchange time (ms): the frame's `creationTime`.
    pub ts: i64,
    /// The item, in the WebSocket item shape.
    pub value: Value,
}

/// What one topic got, oldest first.
#[derive(Debug)]
pub struct Batch {
    pub topic: String,
    pub family: Family,
    pub items: Vec<(ItemId, Item)>,
}

/// The categories `topic` covers: its own (`execution.linear`) or the configured ones.
fn categories(topic: &str, config: &CatchupConfig) -> Vec<Category> {
    match topic
        .split('.')
        .nth(1)
        .and_then(|c| c.parse::<Category>().ok())
    {
        Some(c) => vec![c],
        None => config.categories.clone(),
    }
}

/// The extra parameter sets Bybit requires for `category` on the open-orders and position
/// lists (linear: a settle coin).
fn scopes(category: Category, config: &CatchupConfig) -> Vec<Vec<(&'static str, String)>> {
    if category == Category::Linear && !config.settle_coins.is_empty() {
        config
            .settle_coins
            .iter()
            .map(|c| vec![("settleCoin", c.clone())])
            .collect()
    } else {
        vec![Vec::new()]
    }
}

/// Fetches every topic of `plan`; `from` holds the start (ms) of each cursor topic, `to` the
/// end. Any failed call fails the whole catch-up (it is retried as a whole).
pub async fn fetch(
    rest: &RestClient,
    config: &CatchupConfig,
    plan: &[(String, Family)],
    from: &BTreeMap<String, u64>,
    to: u64,
) -> Result<Vec<Batch>, RestError> {
    let mut out = Vec::new();
    for (topic, family) in plan {
        let start = from.get(topic).copied().unwrap_or(to).min(to);
        let mut got: Vec<(ItemId, Item)> = Vec::new();
        let mut keep = |category: Category, value: Value, ids: &mut HashSet<String>| {
            let key = items::recovered_key(*family, category.as_str(), &value);
            let id = match items::item_id(*family, &value) {
                Some(id) => id,
                None if family.has_cursor() => return,
                None => ItemId {
                    ts: snapshot_ts(*family, &value, to),
                    id: key.clone(),
                },
            };
            if !ids.insert(id.id.clone()) {
                return;
            }
            let ts = id.ts;
            got.push((id, Item { key, ts, value }));
        };
        let mut ids = HashSet::new();
        match family {
            Family::Execution => {
                for c in categories(topic, config) {
                    for v in rest.executions(c.as_str(), start, to).await? {
                        keep(c, v, &mut ids);
                    }
                }
            }
            Family::Order => {
                for c in categories(topic, config) {
                    for v in rest.order_history(c.as_str(), start, to).await? {
                        keep(c, v, &mut ids);
                    }
                    for scope in scopes(c, config) {
                        for v in rest.open_orders(c.as_str(), &scope).await? {
                            if time_field(&v, "updatedTime").is_some_and(|t| t >= start) {
                                keep(c, v, &mut ids);
                            }
                        }
                    }
                }
            }
            Family::Position => {
                for c in categories(topic, config) {
                    if c == Category::Spot {
                        continue;
                    }
                    for scope in scopes(c, config) {
                        for v in rest.positions(c.as_str(), &scope).await? {
                            keep(c, v, &mut ids);
                        }
                    }
                }
            }
            Family::Wallet => {
                for account_type in &config.wallet_account_types {
                    for v in rest.wallet_balance(account_type).await? {
                        keep(Category::Linear, v, &mut ids);
                    }
                }
            }
        }
        got.sort_by_key(|(id, _)| id.ts);
        out.push(Batch {
            topic: topic.clone(),
            family: *family,
            items: got,
        });
    }
    Ok(out)
}

/// A snapshot's exchange time: a position's `updatedTime`, else the fetch time.
fn snapshot_ts(family: Family, value: &Value, now: u64) -> i64 {
    let t = match family {
        Family::Position => time_field(value, "updatedTime").unwrap_or(now),
        _ => now,
    };
    i64::try_from(t).unwrap_or(0)
}
