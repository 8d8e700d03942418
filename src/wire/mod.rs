//! The Bybit v5 WebSocket wire format, in one place: what a frame is ([`parse`], the one parse
//! of every frame), the located head of a data push ([`DataHead`]), the control-frame shapes
//! ([`Frame`], [`Ack`]), and the requests we send ([`ping_request`], [`topics_request`],
//! [`auth_request`]).
//!
//! Docs: <https://bybit-exchange.github.io/docs/v5/ws/connect>. A data push
//! (`tests/fixtures/bybit/linear_publicTrade.json`,
//! <https://bybit-exchange.github.io/docs/v5/websocket/public/trade>):
//!
//! ```json
//! {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1758841135824,"data":[{"T":1758841135823,…}]}
//! ```
//!
//! An order book carries its update id in `data.u`
//! (`tests/fixtures/bybit/linear_orderbook_1_delta.json`,
//! <https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook>):
//!
//! ```json
//! {"topic":"orderbook.1.BTCUSDT","type":"delta","ts":1696581023748,
//!  "data":{"s":"BTCUSDT","b":[],"a":[["27646.90","20.396"]],"u":42452160,"seq":88215706351}}
//! ```
//!
//! Private pushes carry `id, topic, creationTime, data`
//! (`tests/fixtures/bybit/wallet.json`,
//! <https://bybit-exchange.github.io/docs/v5/websocket/private/wallet>). Key order differs by
//! market, so nothing here depends on it.
//!
//! Control frames differ by endpoint (see `tests/fixtures/bybit/SOURCES.md`): a public pong is
//! `{"success":true,"ret_msg":"pong","conn_id":"…","op":"ping"}`, a private/option pong
//! `{"op":"pong","args":["1699766561376"],"conn_id":"…"}`, a spot subscribe ack
//! `{"success":true,"ret_msg":"subscribe","conn_id":"…","op":"subscribe"}` and an option ack
//! `{"success":true,"conn_id":"…","data":{"failTopics":[],"successTopics":["…"]},"type":"COMMAND_RESP"}`.
//!
//! [`parse`] reads a data push with a hand-written scanner ([`scan`]) that validates the JSON
//! and locates the keys without building values; `data` is never parsed, only located, and
//! later copied byte for byte. Control frames and unusual shapes go to serde
//! ([`BybitHead`], [`BybitMessage`]), so both paths give the same answer for every text.

use std::{borrow::Cow, ops::Range};

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;

mod scan;

/// The head of any Bybit frame, as serde reads it; `data` stays raw.
#[derive(Debug, Deserialize)]
pub struct BybitHead<'a> {
    /// Present on data frames only.
    #[serde(borrow, default)]
    pub topic: Option<Cow<'a, str>>,
    /// `snapshot` / `delta` on data, `COMMAND_RESP` on option acks.
    #[serde(borrow, default, rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// `ping` (public pong), `pong`, `auth`, `subscribe`, `unsubscribe`.
    #[serde(borrow, default)]
    pub op: Option<Cow<'a, str>>,
    /// Ack outcome.
    #[serde(default)]
    pub success: Option<bool>,
    /// Free text; may carry escapes (`args size \u003e10`), hence `Cow`.
    #[serde(borrow, default)]
    pub ret_msg: Option<Cow<'a, str>>,
    /// Echo of our `req_id`, when we sent one.
    #[serde(borrow, default)]
    pub req_id: Option<Cow<'a, str>>,
    /// The payload, untouched.
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

/// A data push as serde reads it (the fallback of [`parse`]).
#[derive(Debug, Deserialize)]
pub struct BybitMessage<'a> {
    /// `publicTrade.BTCUSDT`, `order`, `execution.fast`, …
    #[serde(borrow)]
    pub topic: Cow<'a, str>,
    /// `snapshot` / `delta` where Bybit sends one.
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    /// Server time of the push (ms); public frames.
    #[serde(default)]
    pub ts: Option<i64>,
    /// Creation time (ms); private frames.
    #[serde(rename = "creationTime", default)]
    pub creation_time: Option<i64>,
    /// The payload, unparsed.
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// `data` of an option `COMMAND_RESP` ack.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BybitCommandResp {
    /// Topics the request subscribed (or unsubscribed).
    pub success_topics: Vec<String>,
    /// Topics the request could not subscribe.
    pub fail_topics: Vec<String>,
}

/// The one field of an order-book `data` the source needs.
#[derive(Debug, Deserialize)]
pub struct BybitBookData {
    /// Per-topic update id; +1 per delta.
    pub u: u64,
}

/// The top-level fields the envelope `key` reads, as serde reads them (the fallback of
/// [`parse`]); any JSON value, judged by [`string_of`] / [`int_of`].
#[derive(Debug, Deserialize)]
struct BybitKeyFields<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    cs: Option<&'a RawValue>,
}

/// The fields of the first item of an array `data` the envelope `key` reads.
#[derive(Debug, Deserialize)]
struct BybitFirstItem<'a> {
    #[serde(borrow, default)]
    i: Option<&'a RawValue>,
    #[serde(borrow, default)]
    start: Option<&'a RawValue>,
}

/// A JSON string value of the frame (`raw` is a sub-slice of `text`) as [`Text`]; an escaped
/// one is unescaped into `slot`.
fn string_of(text: &str, raw: &RawValue, slot: &mut Option<Box<str>>) -> Option<Text> {
    let raw = raw.get();
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        let value = serde_json::from_str::<String>(raw).ok()?;
        *slot = Some(value.into_boxed_str());
        Some(Text::Escaped)
    } else {
        Some(Text::At(Span::new(offset(text, inner))))
    }
}

/// A JSON integer that fits an `i64`.
fn int_of(raw: &RawValue) -> Option<i64> {
    serde_json::from_str::<i64>(raw.get()).ok()
}

/// Where a located string or value sits in the frame text, as 32-bit offsets: a head is moved
/// with its frame through decode and classify, so it is kept small (a frame is far below 4 GiB:
/// the socket limits messages to 64 MiB, and [`parse`] sends longer texts away first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// The span of `range` (a range of a text below 4 GiB).
    #[inline]
    fn new(range: Range<usize>) -> Self {
        let start = u32::try_from(range.start).unwrap_or(u32::MAX);
        let len = u32::try_from(range.len()).unwrap_or(0);
        Self { start, len }
    }

    /// As a byte range of the text.
    #[inline]
    fn range(self) -> Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// A string of the frame: where it sits in the text, or (escaped in the frame, only on the
/// serde path) that its value is kept in the head's [`Escaped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    At(Span),
    Escaped,
}

impl Text {
    /// The text of a string that serde read, its value going to `slot` when it was escaped.
    fn of(text: &str, s: Cow<'_, str>, slot: &mut Option<Box<str>>) -> Self {
        match s {
            Cow::Borrowed(b) => Self::At(Span::new(offset(text, b))),
            Cow::Owned(o) => {
                *slot = Some(o.into_boxed_str());
                Self::Escaped
            }
        }
    }
}

/// The values of the head's strings that were escaped in the frame (rare: the serde path), boxed
/// so the common head carries one pointer for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Escaped {
    topic: Option<Box<str>>,
    kind: Option<Box<str>>,
    id: Option<Box<str>>,
    first_i: Option<Box<str>>,
}

/// The range of `part` inside `text`, of which it is a sub-slice (serde borrows it).
fn offset(text: &str, part: &str) -> Range<usize> {
    // Pointer difference; no unsafe code is involved.
    let start = (part.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let range = start..start + part.len();
    debug_assert_eq!(text.get(range.clone()), Some(part));
    range
}

/// What the one parse of a data push located: the fields the pipeline needs, as byte ranges
/// of the frame text and numbers. Carried in the event module's `RawFrame` so nothing parses the
/// frame again; kept small (32-bit offsets, escaped strings boxed) because it moves with the
/// frame through every stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataHead {
    topic: Text,
    kind: Option<Text>,
    data: Span,
    /// The top-level `id`, when a string: Bybit's frame id (private pushes, option pushes).
    id: Option<Text>,
    /// `i` of the first item of an array `data`, when a string (publicTrade's trade id).
    first_i: Option<Text>,
    /// The values of the strings above that were escaped in the frame (`Text::Escaped`).
    escaped: Option<Box<Escaped>>,
    /// `ts` (ms): server time of public pushes.
    pub ts: Option<i64>,
    /// `creationTime` (ms): private pushes.
    pub creation_time: Option<i64>,
    /// `data.u`, the order-book update id, when `data` is an object with an unsigned `u`.
    pub u: Option<u64>,
    /// The top-level `cs` (tickers' cross sequence), when an integer.
    pub cs: Option<i64>,
    /// `start` of the first item of an array `data`, when an integer (kline's start time).
    pub first_start: Option<i64>,
}

impl DataHead {
    /// The value of one of the head's strings: in place in `text`, or its escaped value
    /// (`field` picks it from [`Escaped`]).
    #[inline]
    fn string<'a>(
        &'a self,
        t: Option<Text>,
        text: &'a str,
        field: fn(&Escaped) -> &Option<Box<str>>,
    ) -> Option<&'a str> {
        match t? {
            Text::At(span) => Some(text.get(span.range()).unwrap_or_default()),
            Text::Escaped => Some(
                self.escaped
                    .as_deref()
                    .and_then(|e| field(e).as_deref())
                    .unwrap_or_default(),
            ),
        }
    }

    /// Bybit topic (`publicTrade.BTCUSDT`, `wallet`).
    #[inline]
    pub fn topic<'a>(&'a self, text: &'a str) -> &'a str {
        self.string(Some(self.topic), text, |e| &e.topic)
            .unwrap_or_default()
    }

    /// Bybit `type` (`snapshot`, `delta`) where present.
    #[inline]
    pub fn kind<'a>(&'a self, text: &'a str) -> Option<&'a str> {
        self.string(self.kind, text, |e| &e.kind)
    }

    /// Bybit's frame `id` (top level), when a string.
    #[inline]
    pub fn id<'a>(&'a self, text: &'a str) -> Option<&'a str> {
        self.string(self.id, text, |e| &e.id)
    }

    /// `i` of the first item of an array `data` (publicTrade's first trade id), when a string.
    #[inline]
    pub fn first_trade_id<'a>(&'a self, text: &'a str) -> Option<&'a str> {
        self.string(self.first_i, text, |e| &e.first_i)
    }

    /// Whether the topic, `id` and first trade id sit in the frame text as they are (no JSON
    /// escape in the frame): then each can be written between quotes as is (a string the parse
    /// locates in place has no `"`, `\`, or control character).
    #[inline]
    pub fn strings_in_place(&self) -> bool {
        let at = |t: Option<Text>| !matches!(t, Some(Text::Escaped));
        at(Some(self.topic)) && at(self.id) && at(self.first_i)
    }

    /// The byte range of `data` in the frame text.
    #[inline]
    pub fn data_range(&self) -> Range<usize> {
        self.data.range()
    }

    /// `data`, byte for byte as sent.
    #[inline]
    pub fn data<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.data.range()).unwrap_or_default()
    }

    fn from_message(text: &str, msg: BybitMessage<'_>) -> Self {
        let raw = msg.data.get();
        // The key markers (section 5): read leniently, a repeated key or another type gives
        // `None`, as the scanner would have sent such a frame here.
        let extra = serde_json::from_str::<BybitKeyFields<'_>>(text).ok();
        let first = raw
            .starts_with('[')
            .then(|| serde_json::from_str::<Vec<&RawValue>>(raw).ok())
            .flatten()
            .and_then(|items| items.first().copied())
            .filter(|item| item.get().starts_with('{'))
            .and_then(|item| serde_json::from_str::<BybitFirstItem<'_>>(item.get()).ok());
        let (id, cs) = extra.map_or((None, None), |e| (e.id, e.cs));
        let (first_i, first_start) = first.map_or((None, None), |f| (f.i, f.start));
        let mut escaped = Escaped::default();
        let head = Self {
            topic: Text::of(text, msg.topic, &mut escaped.topic),
            kind: msg.kind.map(|k| Text::of(text, k, &mut escaped.kind)),
            data: Span::new(offset(text, raw)),
            id: id.and_then(|v| string_of(text, v, &mut escaped.id)),
            first_i: first_i.and_then(|v| string_of(text, v, &mut escaped.first_i)),
            escaped: None,
            ts: msg.ts,
            creation_time: msg.creation_time,
            u: serde_json::from_str::<BybitBookData>(raw).ok().map(|d| d.u),
            cs: cs.and_then(int_of),
            first_start: first_start.and_then(int_of),
        };
        let any = escaped != Escaped::default();
        Self {
            escaped: any.then(|| Box::new(escaped)),
            ..head
        }
    }
}

/// What a frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A data push: passed on with what was located.
    Data(DataHead),
    /// Either pong shape.
    Pong,
    /// Answer to our `auth`.
    AuthAck { success: bool, ret_msg: String },
    /// Answer to a subscribe/unsubscribe.
    Ack(Ack),
    /// Not JSON, or no topic and no known op. `data` when it has a string `topic` (a data push
    /// that lacks `data` or has a bad `ts`, `type`, …).
    Malformed { data: bool },
}

/// A subscribe/unsubscribe answer, in whichever shape it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Matches our request, when echoed.
    pub req_id: Option<String>,
    /// Overall outcome.
    pub success: bool,
    /// Free text from Bybit (empty on success).
    pub ret_msg: String,
    /// Option shape only: per-topic outcome.
    pub success_topics: Option<Vec<String>>,
    /// Option shape only.
    pub fail_topics: Option<Vec<String>>,
}

/// Not a data push (a control frame or malformed text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a Bybit data push")]
pub struct NotData;

/// The one parse of a frame: what it is and, for a data push, where its fields are.
pub fn parse(text: &str) -> Frame {
    if u32::try_from(text.len()).is_err() {
        // Offsets are 32-bit ([`Span`]); the socket never delivers a text this long.
        return Frame::Malformed { data: false };
    }
    match scanned(text) {
        Some(head) => Frame::Data(head),
        None => parse_with_serde(text),
    }
}

/// A data push's head, or [`NotData`].
pub fn parse_data(text: &str) -> Result<DataHead, NotData> {
    if u32::try_from(text.len()).is_err() {
        return Err(NotData);
    }
    // The scanner's answer goes straight out (not through [`Frame`]: one move less per frame).
    if let Some(head) = scanned(text) {
        return Ok(head);
    }
    match parse_with_serde(text) {
        Frame::Data(head) => Ok(head),
        _ => Err(NotData),
    }
}

/// The head of a plain data push, as the scanner located it (a text below 4 GiB); `None`: ask
/// serde.
#[inline]
fn scanned(text: &str) -> Option<DataHead> {
    match scan::scan(text) {
        scan::Scan::Data(l) => Some(DataHead {
            topic: Text::At(Span::new(l.topic)),
            kind: l.kind.map(|r| Text::At(Span::new(r))),
            data: Span::new(l.data),
            id: l.id.map(|r| Text::At(Span::new(r))),
            first_i: l.first_i.map(|r| Text::At(Span::new(r))),
            escaped: None,
            ts: l.ts,
            creation_time: l.creation_time,
            u: l.u,
            cs: l.cs,
            first_start: l.first_start,
        }),
        scan::Scan::Other => None,
    }
}

/// The serde reading of a frame: control frames, malformed text, unusual data pushes.
fn parse_with_serde(text: &str) -> Frame {
    let Ok(head) = serde_json::from_str::<BybitHead<'_>>(text) else {
        return Frame::Malformed { data: false };
    };
    if head.topic.is_some() {
        return match serde_json::from_str::<BybitMessage<'_>>(text) {
            Ok(msg) => Frame::Data(DataHead::from_message(text, msg)),
            Err(_) => Frame::Malformed { data: true },
        };
    }
    let op = head.op.as_deref().unwrap_or("");
    let ret_msg = head.ret_msg.as_deref().unwrap_or("");
    match (op, head.kind.as_deref()) {
        ("pong", _) => Frame::Pong,
        ("ping", _) if ret_msg == "pong" => Frame::Pong,
        ("auth", _) => Frame::AuthAck {
            success: head.success.unwrap_or(false),
            ret_msg: ret_msg.to_owned(),
        },
        ("subscribe" | "unsubscribe", _) => Frame::Ack(Ack {
            req_id: head.req_id.as_deref().map(str::to_owned),
            success: head.success.unwrap_or(false),
            ret_msg: ret_msg.to_owned(),
            success_topics: None,
            fail_topics: None,
        }),
        (_, Some("COMMAND_RESP")) => {
            let resp = head
                .data
                .and_then(|d| serde_json::from_str::<BybitCommandResp>(d.get()).ok())
                .unwrap_or_default();
            Frame::Ack(Ack {
                req_id: head.req_id.as_deref().map(str::to_owned),
                success: head.success.unwrap_or(false),
                ret_msg: ret_msg.to_owned(),
                success_topics: Some(resp.success_topics),
                fail_topics: Some(resp.fail_topics),
            })
        }
        _ => Frame::Malformed { data: false },
    }
}

/// Whether `topic` is an order book (its `data.u` is tracked for gaps).
pub fn is_orderbook(topic: &str) -> bool {
    topic.starts_with("orderbook.")
}

/// The first `max` characters of a payload, for DEBUG logs of bad frames.
pub fn truncated(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// A `ping` op.
pub fn ping_request(req_id: &str) -> String {
    serde_json::json!({ "req_id": req_id, "op": "ping" }).to_string()
}

/// A `subscribe` or `unsubscribe` op.
pub fn topics_request(req_id: &str, op: &str, topics: &[String]) -> String {
    serde_json::json!({ "req_id": req_id, "op": op, "args": topics }).to_string()
}

/// The private stream's `auth` op: `{"req_id":..,"op":"auth","args":[api_key, expires,
/// signature]}`, built fresh on every (re)connect so `expires` is always
/// `now + auth_expiry_window`. See <https://bybit-exchange.github.io/docs/v5/ws/connect#authentication>.
pub fn auth_request(req_id: &str, api_key: &str, secret: &str, expires: u64) -> String {
    serde_json::json!({
        "req_id": req_id,
        "op": "auth",
        "args": [api_key, expires, sign(secret, expires)],
    })
    .to_string()
}

/// The signature Bybit expects for `expires` (ms since the epoch):
/// `hex(HMAC_SHA256(secret, "GET/realtime" + expires))`.
pub fn sign(secret: &str, expires: u64) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(b"GET/realtime");
    mac.update(expires.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fast_path_tests {
    #[test]
    fn every_fixture_data_frame_takes_the_scanner_path() {
        let dir = format!("{}/tests/fixtures/bybit", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .extension()
                .is_some_and(|e| e == "json" || e == "jsonl")
            {
                continue;
            }
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                if line.contains("\"topic\"") {
                    assert!(
                        matches!(super::scan::scan(line), super::scan::Scan::Data(_)),
                        "{}",
                        path.display()
                    );
                }
            }
        }
    }
}
