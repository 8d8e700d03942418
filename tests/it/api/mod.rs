//! REST API (spec section 6): the seed quickstart walked with real HTTP on PostgreSQL and on
//! SQLite ([`quickstart`]), every documented error path ([`errors`]), restart restore, health,
//! ready, metrics and the OpenAPI file ([`ops`]).

mod bindings;
mod contract;
mod edges;
mod errors;
mod ops;
mod quickstart;
use std::{sync::Arc, time::Duration};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use ws_gateway::{
    event::{Category, Endpoint, Event},
    subscriptions::{TopicKey, TopicStatus},
};

use crate::support::{
    TEST_API_KEY, TestApp, TestConfig, TestDatabase,
    http::{client, delete, get, post, with_credentials},
    silent_bybit_url, spawn_app, sqlite_url, wait_until, wsclient,
};
pub fn trades_key() -> TopicKey {
    TopicKey::new(Endpoint::Public(Category::Linear), "publicTrade.BTCUSDT")
}

/// A trades event as the pipeline would broadcast it.
pub fn trade_event() -> Arc<Event> {
    wsclient::trade_event(
        Category::Linear,
        "BTCUSDT",
        1,
        json!([{"T": 1, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "50000", "i": "x"}]),
    )
}
