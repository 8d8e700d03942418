//! The `/ws` wire protocol: what a client may send and the replies of both dialects. A topic
//! string becomes a registry key by [`crate::subscriptions::parse_topic`].
//!
//! Two dialects share one socket:
//! - `op` (Bybit-like): `{"op":"subscribe","topics":["publicTrade.BTCUSDT"],"category":"linear"}`,
//!   `{"op":"unsubscribe","topics":[…]}`, `{"op":"ping"}`; replies carry `op` and `success`.
//! - `action` (the browser gateway of the seed quickstart): `{"action":"subscribe",
//!   "symbols":["BTCUSDT"]}` means the trades of those symbols in the default category
//!   (`publicTrade.<SYM>` on linear); replies carry `type` (`success`, `error`, `pong`).
//!
//! Everything here is pure (no I/O), so it is tested inline.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{self, SeqAccess, Visitor},
};
use serde_json::{Value, json};

use crate::event::Category;

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

/// Most entries a `topics` / `symbols` array may have. Far above any topics-per-client limit; it
/// only bounds what one message can make the parser allocate (an array of tiny strings would
/// otherwise cost several times its size in `String`s).
pub const MAX_LIST: usize = 1_000;

/// How much of a client's unknown `op` / `action` is quoted back in the error message.
const MAX_QUOTED: usize = 64;

#[derive(Debug, Deserialize)]
struct Inbound {
    op: Option<String>,
    action: Option<String>,
    #[serde(default, deserialize_with = "bounded_strings")]
    topics: Option<Vec<String>>,
    #[serde(default, deserialize_with = "bounded_strings")]
    symbols: Option<Vec<String>>,
    category: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    req_id: Option<Value>,
}

/// An array of at most [`MAX_LIST`] strings; parsing stops at the first entry past it.
fn bounded_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Strings;
    impl<'de> Visitor<'de> for Strings {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {MAX_LIST} strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                if out.len() == MAX_LIST {
                    return Err(de::Error::custom(format!("more than {MAX_LIST} entries")));
                }
                out.push(s);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(Strings)
}

/// A `req_id`: a string, number or boolean (echoed as given); `null` means none. Arrays and
/// objects are refused, so a client cannot make the parser build a large tree.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    struct Scalar;
    impl Visitor<'_> for Scalar {
        type Value = Option<Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, number or boolean")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(Value::Bool(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(Value::from(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Value::from(v)))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Value::from(v)))
        }
    }
    d.deserialize_any(Scalar)
}

/// At most [`MAX_QUOTED`] characters of `s`, for quoting client input back in a message.
fn quoted(s: &str) -> &str {
    s.char_indices().nth(MAX_QUOTED).map_or(s, |(i, _)| &s[..i])
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
            let msg = format!(
                "unknown op {:?}; expected subscribe, unsubscribe or ping",
                quoted(other)
            );
            return Command::Invalid(op_error(Some(quoted(other)), req_id.as_ref(), &msg));
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
        other => Command::Invalid(action_error(&format!("Unknown action: {}", quoted(other)))),
    }
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
