//! How the fake answers each client op, in Bybit's per-endpoint shapes (copied from
//! `tests/fixtures/bybit/`): pongs, auth acks, subscribe/unsubscribe acks and failures.

use std::collections::BTreeSet;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{FAKE_API_KEY, FAKE_API_SECRET};

/// Which family of shapes a path speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Spot,
    Linear,
    Option,
    Private,
}

impl Flavor {
    /// The flavor of a URL path, `None` for paths Bybit does not serve.
    pub fn of(path: &str) -> Option<Self> {
        match path {
            "/v5/public/spot" => Some(Self::Spot),
            "/v5/public/linear" | "/v5/public/inverse" => Some(Self::Linear),
            "/v5/public/option" => Some(Self::Option),
            "/v5/private" => Some(Self::Private),
            _ => None,
        }
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct ConnState {
    pub flavor: Flavor,
    pub conn_id: String,
    pub topics: BTreeSet<String>,
    pub authed: bool,
}

/// Settings of the whole fake that shape answers.
#[derive(Debug, Default)]
pub struct Rules {
    pub answer_pings: bool,
    /// When true, subscribe/unsubscribe ops are swallowed (no ack, nothing subscribed).
    pub ignore_subscribes: bool,
    pub invalid: BTreeSet<String>,
    /// How far the fake's clock is ahead of the machine's (negative: behind), in ms.
    pub clock_offset_ms: i64,
}

impl Rules {
    /// The fake's "server time" in ms: the machine's clock plus the offset.
    pub fn now_ms(&self) -> u64 {
        let local = chrono::Utc::now().timestamp_millis();
        u64::try_from(local.saturating_add(self.clock_offset_ms)).unwrap_or(0)
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

const PUBLIC_PREFIXES: &[&str] = &[
    "orderbook",
    "publicTrade",
    "tickers",
    "kline",
    "liquidation",
    "allLiquidation",
    "insurance",
    "adlAlert",
    "priceLimit",
];
const PRIVATE_PREFIXES: &[&str] = &["order", "execution", "position", "wallet", "greeks", "dcp"];

fn known(flavor: Flavor, topic: &str) -> bool {
    let head = topic.split('.').next().unwrap_or("");
    let prefixes = if flavor == Flavor::Private {
        PRIVATE_PREFIXES
    } else {
        PUBLIC_PREFIXES
    };
    prefixes.contains(&head) && (flavor == Flavor::Private || topic.contains('.'))
}

/// The HMAC Bybit checks.
pub fn signature(secret: &str, expires: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("GET/realtime{expires}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Answers one client frame; `None` when Bybit would stay silent.
pub fn answer(conn: &mut ConnState, rules: &Rules, req: &Value) -> Option<String> {
    let op = req.get("op").and_then(Value::as_str).unwrap_or("");
    let req_id = req.get("req_id").and_then(Value::as_str);
    let args: Vec<String> = req
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match op {
        "ping" if rules.answer_pings => Some(pong(conn, req_id, rules.now_ms())),
        "ping" => None,
        "auth" => Some(auth(conn, req_id, &args, rules.now_ms())),
        "subscribe" | "unsubscribe" if rules.ignore_subscribes => None,
        "subscribe" | "unsubscribe" => Some(topics(conn, rules, op, req_id, &args)),
        _ => Some(ack(conn, req_id, op, false, "error:unknown op")),
    }
}

fn pong(conn: &ConnState, req_id: Option<&str>, now: u64) -> String {
    let cid = q(&conn.conn_id);
    match conn.flavor {
        Flavor::Private | Flavor::Option => {
            let rid = req_id.map_or(String::new(), |r| format!(r#""req_id":{},"#, q(r)));
            format!(r#"{{{rid}"op":"pong","args":["{}"],"conn_id":{cid}}}"#, now)
        }
        Flavor::Spot | Flavor::Linear => {
            let rid = req_id.map_or(String::new(), |r| format!(r#""req_id":{},"#, q(r)));
            format!(r#"{{"success":true,"ret_msg":"pong","conn_id":{cid},{rid}"op":"ping"}}"#)
        }
    }
}

fn auth(conn: &mut ConnState, req_id: Option<&str>, args: &[String], now: u64) -> String {
    let rid = req_id.map_or(String::new(), |r| format!(r#""req_id":{},"#, q(r)));
    let cid = q(&conn.conn_id);
    let expires = args.get(1).and_then(|e| e.parse::<u64>().ok()).unwrap_or(0);
    let ok = conn.flavor == Flavor::Private
        && args.len() == 3
        && args[0] == FAKE_API_KEY
        && expires > now
        && expires <= now + 5 * 60 * 1000
        && args[2] == signature(FAKE_API_SECRET, expires);
    conn.authed |= ok;
    let msg = if ok { "" } else { "Params Error" };
    format!(r#"{{{rid}"success":{ok},"ret_msg":"{msg}","op":"auth","conn_id":{cid}}}"#)
}

/// An ack or failure in the shape of the connection's flavor (not option).
fn ack(conn: &ConnState, req_id: Option<&str>, op: &str, ok: bool, msg: &str) -> String {
    let cid = q(&conn.conn_id);
    let msg = q(msg).replace('>', r"\u003e");
    match conn.flavor {
        Flavor::Private => {
            let rid = req_id.map_or(String::new(), |r| format!(r#""req_id":{},"#, q(r)));
            format!(r#"{{{rid}"success":{ok},"ret_msg":{msg},"op":"{op}","conn_id":{cid}}}"#)
        }
        Flavor::Linear => {
            let rid = q(req_id.unwrap_or(""));
            format!(
                r#"{{"success":{ok},"ret_msg":{msg},"conn_id":{cid},"req_id":{rid},"op":"{op}"}}"#
            )
        }
        Flavor::Spot | Flavor::Option => {
            let rid = req_id.map_or(String::new(), |r| format!(r#""req_id":{},"#, q(r)));
            format!(r#"{{"success":{ok},"ret_msg":{msg},"conn_id":{cid},{rid}"op":"{op}"}}"#)
        }
    }
}

fn topics(
    conn: &mut ConnState,
    rules: &Rules,
    op: &str,
    req_id: Option<&str>,
    args: &[String],
) -> String {
    let subscribe = op == "subscribe";
    if conn.flavor == Flavor::Private && !conn.authed {
        return ack(conn, req_id, op, false, "Request not authorized");
    }
    if conn.flavor == Flavor::Spot && args.len() > 10 {
        return ack(conn, req_id, op, false, "args size >10");
    }
    let invalid = |t: &String| rules.invalid.contains(t) || !known(conn.flavor, t);
    if conn.flavor == Flavor::Option {
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for t in args {
            if subscribe && invalid(t) {
                failed.push(t.clone());
            } else {
                ok.push(t.clone());
            }
        }
        for t in &ok {
            if subscribe {
                conn.topics.insert(t.clone());
            } else {
                conn.topics.remove(t);
            }
        }
        let rid = req_id.map_or(String::new(), |r| format!(r#""req_id":{},"#, q(r)));
        return format!(
            r#"{{"success":{},"ret_msg":"","conn_id":{},{rid}"data":{{"failTopics":{},"successTopics":{}}},"type":"COMMAND_RESP"}}"#,
            failed.is_empty(),
            q(&conn.conn_id),
            serde_json::to_string(&failed).unwrap_or_default(),
            serde_json::to_string(&ok).unwrap_or_default(),
        );
    }
    if subscribe {
        // All or nothing, naming the first offending topic, as Bybit's text does.
        if let Some(t) = args.iter().find(|t| invalid(t)) {
            return ack(
                conn,
                req_id,
                op,
                false,
                &format!("error:handler not found,topic:{t}"),
            );
        }
        if let Some(t) = args.iter().find(|t| conn.topics.contains(*t)) {
            return ack(
                conn,
                req_id,
                op,
                false,
                &format!("error:already subscribed,topic:{t}"),
            );
        }
        conn.topics.extend(args.iter().cloned());
    } else {
        for t in args {
            conn.topics.remove(t);
        }
    }
    let msg = if conn.flavor == Flavor::Spot { op } else { "" };
    ack(conn, req_id, op, true, msg)
}
