//! The `/ws` wire protocol: what a client may send, how a topic string becomes a registry key,
//! and the replies of both dialects.
//!
//! Two dialects share one socket:
//! - `op` (Bybit-like): `{"op":"subscribe","topics":["publicTrade.BTCUSDT"],"category":"linear"}`,
//!   `{"op":"unsubscribe","topics":[…]}`, `{"op":"ping"}`; replies carry `op` and `success`.
//! - `action` (the browser gateway of the seed quickstart): `{"action":"subscribe",
//!   "symbols":["BTCUSDT"]}` means the trades of those symbols in the default category
//!   (`publicTrade.<SYM>` on linear); replies carry `type` (`success`, `error`, `pong`).
//!
//! Everything here is pure (no I/O), so it is tested inline.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    event::{Category, Endpoint},
    source::subscriptions::TopicKey,
    topics::{ChannelType, TopicSpec},
};

/// Longest topic string accepted (Bybit's longest real topics are well under this).
pub const MAX_TOPIC_LEN: usize = 64;

/// A parsed client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `op` dialect.
    Op {
        /// What is asked.
        op: OpCommand,
        /// Echoed in the reply when the client sent one.
        req_id: Option<Value>,
    },
    /// `action` dialect.
    Action(ActionCommand),
    /// Not understood; the reply to send.
    Invalid(String),
}

/// A request of the `op` dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpCommand {
    /// Topics with the category they were asked in (`None` = not given).
    Subscribe {
        topics: Vec<String>,
        category: Option<Category>,
    },
    /// Topics to drop; without a category, on every endpoint the client holds them.
    Unsubscribe {
        topics: Vec<String>,
        category: Option<Category>,
    },
    /// `{"op":"ping"}`.
    Ping,
}

/// A request of the `action` dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionCommand {
    /// Trades of these symbols (upper-cased) in the default category.
    Subscribe(Vec<String>),
    /// Stop the trades of these symbols.
    Unsubscribe(Vec<String>),
    /// `{"action":"ping"}`.
    Ping,
}

#[derive(Debug, Deserialize)]
struct Inbound {
    op: Option<String>,
    action: Option<String>,
    topics: Option<Vec<String>>,
    symbols: Option<Vec<String>>,
    category: Option<String>,
    req_id: Option<Value>,
}

/// Parses one text message. Never fails: what is not understood becomes [`Command::Invalid`]
/// carrying the reply in the dialect the client seems to speak.
pub fn parse(text: &str) -> Command {
    let inbound: Inbound = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return Command::Invalid(op_error(
                None,
                None,
                "expected a JSON object with \"op\" or \"action\"",
            ));
        }
    };
    if let Some(action) = inbound.action.as_deref() {
        return parse_action(action, inbound.symbols);
    }
    let req_id = inbound.req_id;
    let Some(op) = inbound.op else {
        return Command::Invalid(op_error(
            None,
            req_id.as_ref(),
            "expected a JSON object with \"op\" or \"action\"",
        ));
    };
    let category = match inbound.category.as_deref().map(str::parse::<Category>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => {
            let msg = "category must be one of spot, linear, inverse, option";
            return Command::Invalid(op_error(Some(&op), req_id.as_ref(), msg));
        }
    };
    let op_cmd = match op.as_str() {
        "ping" => OpCommand::Ping,
        "subscribe" | "unsubscribe" => {
            let topics = inbound.topics.unwrap_or_default();
            if topics.is_empty() {
                let msg = "topics must be a non-empty array of strings";
                return Command::Invalid(op_error(Some(&op), req_id.as_ref(), msg));
            }
            if op == "subscribe" {
                OpCommand::Subscribe { topics, category }
            } else {
                OpCommand::Unsubscribe { topics, category }
            }
        }
        other => {
            let msg = format!("unknown op {other:?}; expected subscribe, unsubscribe or ping");
            return Command::Invalid(op_error(Some(other), req_id.as_ref(), &msg));
        }
    };
    Command::Op { op: op_cmd, req_id }
}

fn parse_action(action: &str, symbols: Option<Vec<String>>) -> Command {
    match action {
        "ping" => Command::Action(ActionCommand::Ping),
        "subscribe" | "unsubscribe" => {
            let symbols: Vec<String> = symbols
                .unwrap_or_default()
                .iter()
                .map(|s| s.trim().to_ascii_uppercase())
                .collect();
            if symbols.is_empty() {
                return Command::Invalid(action_error("symbols must be a non-empty array"));
            }
            Command::Action(if action == "subscribe" {
                ActionCommand::Subscribe(symbols)
            } else {
                ActionCommand::Unsubscribe(symbols)
            })
        }
        other => Command::Invalid(action_error(&format!("Unknown action: {other}"))),
    }
}

/// Why a topic string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("topic {0:?} is empty or longer than {MAX_TOPIC_LEN} characters")]
    BadLength(String),
    #[error("topic {0:?} is not a known Bybit v5 topic")]
    UnknownTopic(String),
    #[error("topic {topic:?}: {reason}")]
    Invalid { topic: String, reason: String },
    #[error("topic {0:?} is private and needs Bybit credentials (BYBIT_API_KEY, BYBIT_API_SECRET)")]
    PrivateUnavailable(String),
}

/// Turns a Bybit v5 topic (as a client wrote it) into the registry key it is subscribed as.
/// Public topics live on `category` (default linear); private ones on the private endpoint.
pub fn topic_key(
    topic: &str,
    category: Option<Category>,
    private_available: bool,
) -> Result<TopicKey, ProtocolError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(ProtocolError::BadLength(
            topic.chars().take(MAX_TOPIC_LEN).collect(),
        ));
    }
    let parts: Vec<&str> = topic.split('.').collect();
    let invalid = |e: crate::topics::TopicError| ProtocolError::Invalid {
        topic: topic.to_owned(),
        reason: e.to_string(),
    };
    let unknown = || ProtocolError::UnknownTopic(topic.to_owned());
    let public = |channel, depth: Option<&str>, interval: Option<&str>, symbol: &str| {
        let depth = match depth.map(str::parse::<u32>) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(_)) => return Err(unknown()),
        };
        TopicSpec::new(channel, category, Some(symbol), depth, interval)
            .map(|s| s.key())
            .map_err(invalid)
    };
    let key = match parts.as_slice() {
        ["publicTrade", sym] => public(ChannelType::Trades, None, None, sym)?,
        ["tickers", sym] => public(ChannelType::Ticker, None, None, sym)?,
        ["orderbook", depth, sym] => public(ChannelType::Orderbook, Some(depth), None, sym)?,
        ["kline", interval, sym] => public(ChannelType::Kline, None, Some(interval), sym)?,
        ["allLiquidation", sym] => public(ChannelType::Liquidation, None, None, sym)?,
        ["wallet"] | ["greeks"] | ["execution", "fast"] => TopicKey::new(Endpoint::Private, topic),
        ["execution", "fast", cat] => {
            cat.parse::<Category>().map_err(|_| unknown())?;
            TopicKey::new(Endpoint::Private, topic)
        }
        [base @ ("order" | "execution" | "position"), rest @ ..] if rest.len() <= 1 => {
            let channel: ChannelType = base.parse().map_err(|_| unknown())?;
            let scope = match rest.first() {
                None => None,
                Some(c) => Some(c.parse::<Category>().map_err(|_| unknown())?),
            };
            TopicSpec::new(channel, scope, None, None, None)
                .map(|s| s.key())
                .map_err(invalid)?
        }
        _ => return Err(unknown()),
    };
    if key.endpoint == Endpoint::Private && !private_available {
        return Err(ProtocolError::PrivateUnavailable(topic.to_owned()));
    }
    Ok(key)
}

/// The key of `publicTrade.<symbol>` on linear: what an `action` subscription means.
pub fn trade_key(symbol: &str) -> Result<TopicKey, ProtocolError> {
    TopicSpec::new(
        ChannelType::Trades,
        Some(Category::Linear),
        Some(symbol),
        None,
        None,
    )
    .map(|s| s.key())
    .map_err(|e| ProtocolError::Invalid {
        topic: format!("publicTrade.{symbol}"),
        reason: e.to_string(),
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn with_req_id(mut v: Value, req_id: Option<&Value>) -> String {
    if let Some(id) = req_id {
        v["req_id"] = id.clone();
    }
    v.to_string()
}

/// `{"op":…,"success":true,"topics":[…]}`.
pub fn op_success(op: &str, req_id: Option<&Value>, topics: &[String]) -> String {
    with_req_id(json!({"op": op, "success": true, "topics": topics}), req_id)
}

/// `{"op":…,"success":false,"message":…}` (`op` omitted when the client sent none).
pub fn op_error(op: Option<&str>, req_id: Option<&Value>, message: &str) -> String {
    let mut v = json!({"success": false, "message": message});
    if let Some(op) = op {
        v["op"] = json!(op);
    }
    with_req_id(v, req_id)
}

/// `{"op":"pong","ts":<ms>}`.
pub fn op_pong(req_id: Option<&Value>) -> String {
    with_req_id(json!({"op": "pong", "ts": now_ms()}), req_id)
}

/// `{"type":"success","message":…,"data":{<verb>:[…],"currentSubscriptions":[…]},"timestamp":…}`.
pub fn action_success(verb: &str, changed: &[String], current: &[String]) -> String {
    let (message, key) = match verb {
        "subscribe" => (
            format!("Successfully subscribed to {} symbol(s)", changed.len()),
            "subscribed",
        ),
        _ => (
            format!("Successfully unsubscribed from {} symbol(s)", changed.len()),
            "unsubscribed",
        ),
    };
    json!({
        "type": "success",
        "message": message,
        "data": { key: changed, "currentSubscriptions": current },
        "timestamp": now_ms(),
    })
    .to_string()
}

/// `{"type":"error","message":…,"timestamp":…}`.
pub fn action_error(message: &str) -> String {
    json!({"type": "error", "message": message, "timestamp": now_ms()}).to_string()
}

/// `{"type":"pong","timestamp":<ms>}`.
pub fn action_pong() -> String {
    json!({"type": "pong", "timestamp": now_ms()}).to_string()
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
