//! Reading a `GET /api/v1/cluster` answer: the instances it lists, each topic's owner and
//! epoch, how many topics each instance owns, and the Bybit path of a listed category.

use std::collections::{BTreeMap, BTreeSet};

use fake_bybit::{INVERSE, LINEAR, OPTION, PRIVATE, SPOT};
use serde_json::Value;

/// The Bybit path of a `/api/v1/cluster` topic's category (`private` or anything not public
/// is the private stream).
pub fn path_of(category: &str) -> &'static str {
    match category {
        "spot" => SPOT,
        "linear" => LINEAR,
        "inverse" => INVERSE,
        "option" => OPTION,
        _ => PRIVATE,
    }
}

/// The instance ids `/api/v1/cluster` lists.
pub fn instance_ids(view: &Value) -> BTreeSet<String> {
    view["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// (path, topic) → (owner, epoch) as `/api/v1/cluster` gives them. The private stream is one
/// lease: listed as a topic `private`, it stands for each private topic.
pub fn owners(view: &Value) -> BTreeMap<(String, String), (String, u64)> {
    let mut out = listed_owners(view);
    if let Some(unit) = out
        .get(&(PRIVATE.to_owned(), "private".to_owned()))
        .cloned()
    {
        for t in ["execution", "order", "position", "wallet"] {
            out.entry((PRIVATE.to_owned(), t.to_owned()))
                .or_insert_with(|| unit.clone());
        }
    }
    out
}

fn listed_owners(view: &Value) -> BTreeMap<(String, String), (String, u64)> {
    view["topics"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    let path = path_of(t["category"].as_str().unwrap_or("private"));
                    Some((
                        (path.to_owned(), t["topic"].as_str()?.to_owned()),
                        (
                            t["owner"].as_str().unwrap_or("").to_owned(),
                            t["epoch"].as_u64().unwrap_or(0),
                        ),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `owned_topics` of each instance (a count, or the length of a list).
pub fn owned_counts(view: &Value) -> BTreeMap<String, u64> {
    view["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    let n = match &i["owned_topics"] {
                        Value::Array(v) => v.len() as u64,
                        v => v.as_u64()?,
                    };
                    Some((i["id"].as_str()?.to_owned(), n))
                })
                .collect()
        })
        .unwrap_or_default()
}
