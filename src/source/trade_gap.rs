//! Public trade recovery after a public reconnect (spec section 10, "Public trades"): the
//! pieces that do not touch a socket.
//!
//! Per `publicTrade.<symbol>` topic, a connection remembers the last trade it emitted
//! ([`TradeMark`], read from the last item of each frame without parsing it, see
//! [`last_trade`]). After a reconnect, once the topic is acked again, the session holds that
//! topic's live frames (bounded), fetches `/v5/market/recent-trade` and [`plan`]s which REST
//! trades fall between the mark and the first live trade; those are emitted as recovered
//! events ([`recovered_frames`]) before the held live frames. What REST no longer has is
//! counted as lost ([`Lost`]). The session side is `session/trades.rs`.

use std::{collections::HashMap, sync::Arc};

use serde_json::Value;
use tokio::sync::Semaphore;

use crate::{
    event::{Category, Endpoint, RawFrame},
    rest::{RestClient, shape::recent_trade_to_ws, time_field},
};

/// Trades per recovered event (Bybit's own frames carry fewer; a consumer handles any count).
pub const TRADES_PER_EVENT: usize = 100;

/// REST fetches of recent trades running at once, process-wide (a reconnect of a connection
/// with many `publicTrade` topics must not burst Bybit's IP limit).
pub const CONCURRENT_FETCHES: usize = 4;

/// The topic prefix of public trades.
const PREFIX: &str = "publicTrade.";

/// Whether `topic` is a public trade topic (`publicTrade.<symbol>`).
pub fn is_public_trade(topic: &str) -> bool {
    topic.starts_with(PREFIX)
}

/// The most recent trades Bybit's REST keeps for `category` (what one request can return).
pub fn rest_keeps(category: Category) -> u32 {
    if category == Category::Spot { 60 } else { 1000 }
}

/// What the source needs for trade recovery, shared by every connection.
#[derive(Debug, Clone)]
pub struct TradeRecovery {
    /// The REST client; `None` disables recovery.
    pub rest: Option<RestClient>,
    /// Bounds the fetches running at once.
    pub permits: Arc<Semaphore>,
}

impl TradeRecovery {
    /// Recovery over `rest` (none: no recovery).
    pub fn new(rest: Option<RestClient>) -> Self {
        Self {
            rest,
            permits: Arc::new(Semaphore::new(CONCURRENT_FETCHES)),
        }
    }
}

/// A trade: its id (`i` / `execId`) and exchange time (`T` / `time`, ms; 0 when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradeMark {
    /// Bybit's trade id.
    pub id: String,
    /// Trade time (ms).
    pub time: u64,
}

impl TradeMark {
    /// A mark from borrowed parts.
    pub fn new(id: &str, time: u64) -> Self {
        Self {
            id: id.to_owned(),
            time,
        }
    }

    fn set(&mut self, id: &str, time: u64) {
        self.id.clear();
        self.id.push_str(id);
        self.time = time;
    }

    fn number(&self) -> Option<u64> {
        self.id.parse().ok()
    }
}

/// The last trade emitted per topic, kept by a connection across its sessions.
#[derive(Debug, Default)]
pub struct TradeMarks {
    marks: HashMap<String, TradeMark>,
}

impl TradeMarks {
    /// Notes the last trade of a frame of `topic` with `data` (one lookup and a backward scan
    /// of the last item; no allocation once the topic is known); returns its id and time.
    pub fn note<'d>(&mut self, topic: &str, data: &'d str) -> Option<(&'d str, u64)> {
        let (id, time) = last_trade(data)?;
        match self.marks.get_mut(topic) {
            Some(mark) => mark.set(id, time),
            None => {
                self.marks
                    .insert(topic.to_owned(), TradeMark::new(id, time));
            }
        }
        Some((id, time))
    }

    /// Sets the mark of `topic` (after recovered trades were emitted).
    pub fn set(&mut self, topic: &str, mark: TradeMark) {
        self.marks.insert(topic.to_owned(), mark);
    }

    /// The last trade emitted on `topic`.
    pub fn get(&self, topic: &str) -> Option<&TradeMark> {
        self.marks.get(topic)
    }

    /// Forgets `topic` (unsubscribed: a later subscribe is not a gap).
    pub fn forget(&mut self, topic: &str) {
        self.marks.remove(topic);
    }
}

/// The id and time of the first item of a `publicTrade` `data` array.
pub fn first_trade(data: &str) -> Option<(&str, u64)> {
    let start = data.find('{')?;
    let end = start + data[start..].find('}')?;
    item_mark(&data[start..=end])
}

/// The id and time of the last item of a `publicTrade` `data` array.
pub fn last_trade(data: &str) -> Option<(&str, u64)> {
    let end = data.rfind('}')?;
    let start = data[..end].rfind('{')?;
    item_mark(&data[start..=end])
}

/// `i` (a string) and `T` (a number; 0 when absent) of one flat trade item.
fn item_mark(item: &str) -> Option<(&str, u64)> {
    let id = match value_of(item, b'i')? {
        Scalar::Str(s) | Scalar::Num(s) => s,
    };
    let time = match value_of(item, b'T') {
        Some(Scalar::Num(s) | Scalar::Str(s)) => s.parse().unwrap_or(0),
        None => 0,
    };
    Some((id, time))
}

enum Scalar<'a> {
    Str(&'a str),
    Num(&'a str),
}

/// The scalar value of the one-letter `key` in a flat JSON object's text: a key is a quoted
/// string followed by `:` (a value is followed by `,` or `}`, so a value equal to the key's
/// text is not taken for it). Strings with escapes are refused (ids and times have none). One
/// pass over the bytes, no searcher set-up: this runs on every `publicTrade` frame.
fn value_of(item: &str, key: u8) -> Option<Scalar<'_>> {
    let b = item.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        if b[i] == b'"' && b[i + 1] == key && b[i + 2] == b'"' {
            let mut j = i + 3;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < b.len() && b[j] == b':' {
                j += 1;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let value = item.get(j..)?;
                if let Some(s) = value.strip_prefix('"') {
                    let end = s.find('"')?;
                    let s = &s[..end];
                    return (!s.contains('\\')).then_some(Scalar::Str(s));
                }
                let end = value
                    .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '.'))
                    .unwrap_or(value.len());
                return (end > 0).then_some(Scalar::Num(&value[..end]));
            }
        }
        i += 1;
    }
    None
}

/// Trades REST no longer had: the oldest missed ones are older than its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// This many (trade ids are sequential numbers, so the hole is known exactly).
    Counted(u64),
    /// Some, how many unknown (ids are not sequential).
    Uncounted,
}

/// Which REST trades to publish after a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The missed trades in the `publicTrade` item shape, oldest first.
    pub trades: Vec<Value>,
    /// What REST no longer had, if anything.
    pub lost: Option<Lost>,
}

/// One REST trade with its id and time read.
struct Rest<'a> {
    id: &'a str,
    time: u64,
    item: &'a Value,
}

/// Picks the trades after `last` (the last trade emitted before the gap) and before
/// `first_live` (the first live trade after it, if one arrived) from `newest_first` (the
/// `/v5/market/recent-trade` list as Bybit answers it).
///
/// The cut is by trade id where REST has the trade; otherwise by time. When REST's oldest
/// trade is already after `last`, the trades between were lost: counted exactly when the ids
/// (REST's and `last`) are consecutive numbers, else as one uncounted gap.
pub fn plan(newest_first: &[Value], last: &TradeMark, first_live: Option<&TradeMark>) -> Plan {
    let asc: Vec<Rest<'_>> = newest_first
        .iter()
        .rev()
        .filter_map(|item| {
            Some(Rest {
                id: item.get("execId")?.as_str()?,
                time: time_field(item, "time").unwrap_or(0),
                item,
            })
        })
        .collect();
    let later = |r: &Rest<'_>, mark: &TradeMark| match (r.id.parse::<u64>(), mark.number()) {
        (Ok(a), Some(b)) if r.time == mark.time => a > b,
        _ => r.time > mark.time,
    };
    let (start, lost) = match asc.iter().position(|r| r.id == last.id) {
        Some(p) => (p + 1, None),
        None => match asc.first() {
            Some(oldest) if later(oldest, last) => (0, Some(lost_between(&asc, last))),
            _ => (
                asc.iter().position(|r| later(r, last)).unwrap_or(asc.len()),
                None,
            ),
        },
    };
    let end = match first_live {
        None => asc.len(),
        Some(live) => asc.iter().position(|r| r.id == live.id).unwrap_or_else(|| {
            // REST does not have the first live trade yet: nothing after it either, and any
            // trade of the same millisecond it has came before it.
            asc.iter()
                .position(|r| r.time > live.time)
                .unwrap_or(asc.len())
        }),
    };
    let trades = asc
        .get(start..end.max(start))
        .unwrap_or_default()
        .iter()
        .map(|r| recent_trade_to_ws(r.item))
        .collect();
    let lost = match lost {
        Some(Lost::Counted(0)) => None,
        other => other,
    };
    Plan { trades, lost }
}

/// How many trades lie between `last` and REST's oldest, when that can be known.
fn lost_between(asc: &[Rest<'_>], last: &TradeMark) -> Lost {
    let ids: Option<Vec<u64>> = asc.iter().map(|r| r.id.parse().ok()).collect();
    match (ids, last.number()) {
        (Some(ids), Some(last)) if ids.windows(2).all(|w| w[1] == w[0] + 1) => {
            ids.first().map_or(Lost::Uncounted, |first| {
                Lost::Counted(first.saturating_sub(last).saturating_sub(1))
            })
        }
        _ => Lost::Uncounted,
    }
}

/// The recovered events for `trades` (WS-shape items, oldest first) of `topic` on `endpoint`:
/// frames in the `publicTrade` shape, `per_event` trades each, keyed like a live
/// frame (`<category>:<topic>:<first trade id>`), `ts` the chunk's last trade time.
pub fn recovered_frames(
    endpoint: Endpoint,
    connection_id: u64,
    topic: &str,
    trades: &[Value],
    per_event: usize,
) -> Vec<RawFrame> {
    let category = endpoint.label();
    trades
        .chunks(per_event.max(1))
        .filter_map(|chunk| {
            let first = chunk.first()?.get("i")?.as_str()?;
            let ts = chunk.iter().filter_map(|t| t.get("T")?.as_u64()).max();
            let text = serde_json::json!({
                "topic": topic, "type": "recovery", "ts": ts.unwrap_or(0), "data": chunk,
            })
            .to_string();
            let key = format!("{category}:{topic}:{first}");
            match RawFrame::recovered(endpoint, connection_id, text, key) {
                Ok(frame) => Some(frame),
                Err(error) => {
                    tracing::warn!(topic, ?error, "A recovered trade frame did not parse.");
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
