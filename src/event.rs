//! Types that cross stage boundaries: where a frame came from ([`Endpoint`], [`Category`]), the
//! untouched frame the source emits ([`RawFrame`]), and the enriched [`Event`] that sinks consume.
//!
//! Stages never import each other; they meet here.

use std::{
    cell::Cell,
    fmt,
    ops::{Deref, Range},
    str::FromStr,
    time::{Duration, Instant},
};

use async_tungstenite::tungstenite::Utf8Bytes;
use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::{self, DataHead, NotData};

mod shared_str;
pub use shared_str::SharedStr;

/// A Bybit product category; one public endpoint each.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    poem_openapi::Enum,
)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum Category {
    Spot,
    Linear,
    Inverse,
    Option,
}

impl Category {
    /// Every category, in Bybit's order.
    pub const ALL: [Category; 4] = [Self::Spot, Self::Linear, Self::Inverse, Self::Option];

    /// Lower-case name, as in Bybit URLs and our routing keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Spot => "spot",
            Self::Linear => "linear",
            Self::Inverse => "inverse",
            Self::Option => "option",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category {s:?}"))
    }
}

/// One Bybit WebSocket endpoint: a public category or the private stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Public(Category),
    Private,
}

impl Endpoint {
    /// The URL path appended to the base URL.
    pub const fn path(self) -> &'static str {
        match self {
            Self::Public(Category::Spot) => "/v5/public/spot",
            Self::Public(Category::Linear) => "/v5/public/linear",
            Self::Public(Category::Inverse) => "/v5/public/inverse",
            Self::Public(Category::Option) => "/v5/public/option",
            Self::Private => "/v5/private",
        }
    }

    /// Metric label and log field: the category name or `private`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Public(c) => c.as_str(),
            Self::Private => "private",
        }
    }

    /// The category of a public endpoint.
    pub const fn category(self) -> Option<Category> {
        match self {
            Self::Public(c) => Some(c),
            Self::Private => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One data frame exactly as read off a Bybit socket, with what the source's one parse located
/// in it ([`DataHead`]: topic, type, ts / creationTime, the `data` range, order-book `u`), so no
/// later stage parses it again. Control frames (pongs, acks) never leave the source.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// The endpoint the frame arrived on.
    pub endpoint: Endpoint,
    /// Process-unique number of the connection (shards of one endpoint differ).
    pub connection_id: u64,
    /// Wall-clock receive time.
    pub received_at: DateTime<Utc>,
    /// Monotonic receive time, for latency histograms.
    pub received_mono: Instant,
    /// The frame's text, shared with the socket buffer (no copy).
    text: Utf8Bytes,
    /// Where the parse found the head fields in `text`.
    head: DataHead,
    /// The key of a frame recovered over REST (section 10); `None` for a live frame.
    recovered: Option<Box<str>>,
}

impl RawFrame {
    /// A frame and the head [`wire::parse`] located in it, received at `received_mono` (the
    /// wall-clock receive time is derived from it, see [`wall_clock_at`]).
    #[inline]
    pub(crate) fn new(
        endpoint: Endpoint,
        connection_id: u64,
        received_mono: Instant,
        text: Utf8Bytes,
        head: DataHead,
    ) -> Self {
        Self {
            endpoint,
            connection_id,
            received_at: wall_clock_at(received_mono),
            received_mono,
            text,
            head,
            recovered: None,
        }
    }

    /// Parses `text` once and keeps it with what was located, received now. For tests,
    /// benches and replays; the source builds frames from its own parse.
    #[inline]
    pub fn parse(
        endpoint: Endpoint,
        connection_id: u64,
        text: impl Into<Utf8Bytes>,
    ) -> Result<Self, NotData> {
        let text = text.into();
        let head = wire::parse_data(text.as_str())?;
        Ok(Self::new(
            endpoint,
            connection_id,
            Instant::now(),
            text,
            head,
        ))
    }

    /// A frame recovered over REST after a gap (spec section 10): `text` is a synthetic frame
    /// in the WebSocket shape (`{"id":"r1","topic":"execution","type":"recovery",
    /// "creationTime":…,"data":[…]}`), parsed once like a live one, and `key` is its envelope
    /// `key` (the items' identity, e.g. `execution:<execId>`). It goes through decode →
    /// classify → enrich like a live frame (same seq counter per topic); its envelope carries
    /// `"key":<key>,"recovered":true`.
    pub fn recovered(
        endpoint: Endpoint,
        connection_id: u64,
        text: String,
        key: String,
    ) -> Result<RawFrame, NotData> {
        let mut frame = Self::parse(endpoint, connection_id, text)?;
        frame.recovered = Some(key.into_boxed_str());
        Ok(frame)
    }

    /// Whether the frame was recovered over REST ([`RawFrame::recovered`]).
    pub fn is_recovered(&self) -> bool {
        self.recovered.is_some()
    }

    /// The key given to a recovered frame; `None` for a live one (enrich computes its key).
    pub fn recovered_key(&self) -> Option<&str> {
        self.recovered.as_deref()
    }

    /// The frame's text, as received.
    #[inline]
    pub fn text(&self) -> &str {
        self.text.as_str()
    }

    /// What the parse located.
    #[inline]
    pub fn head(&self) -> &DataHead {
        &self.head
    }

    /// Bybit topic.
    #[inline]
    pub fn topic(&self) -> &str {
        self.head.topic(self.text.as_str())
    }

    /// Bybit `type` (`snapshot`, `delta`), where present.
    #[inline]
    pub fn kind(&self) -> Option<&str> {
        self.head.kind(self.text.as_str())
    }

    /// `data`, byte for byte as sent.
    #[inline]
    pub fn data(&self) -> &str {
        self.head.data(self.text.as_str())
    }
}

thread_local! {
    /// A monotonic instant and the wall-clock time (UTC) at it, a whole second.
    static WALL_BASE: Cell<Option<(Instant, NaiveDateTime)>> = const { Cell::new(None) };
}

/// The wall-clock time at the monotonic instant `mono`, from this thread's base (one wall-clock
/// read per thread and second): a frame's receive time costs the one `Instant::now()` the
/// source takes, not a second clock read and chrono's calendar conversion per frame. The base
/// is a whole second of the wall clock, so within that second the time is the base with the
/// nanoseconds since it (no date arithmetic). Within a second of the base the two clocks drift
/// apart by at most the clock's slew (microseconds at most); a stepped wall clock is picked up
/// at the next base.
#[inline]
fn wall_clock_at(mono: Instant) -> DateTime<Utc> {
    WALL_BASE.with(|cell| {
        if let Some((base_mono, base_wall)) = cell.get()
            && let Some(since) = mono.checked_duration_since(base_mono)
            && since.as_secs() == 0
            && let Some(at) = base_wall.with_nanosecond(since.subsec_nanos())
        {
            return at.and_utc();
        }
        new_wall_base(cell, mono)
    })
}

/// Reads the wall clock, sets this thread's base to the whole second of the time at `mono`
/// (not during a leap second) and returns that time.
#[cold]
fn new_wall_base(cell: &Cell<Option<(Instant, NaiveDateTime)>>, mono: Instant) -> DateTime<Utc> {
    let (now_mono, now_wall) = (Instant::now(), Utc::now());
    // `mono` was read before now: step back by the difference.
    let at = TimeDelta::from_std(now_mono.saturating_duration_since(mono))
        .ok()
        .and_then(|d| now_wall.checked_sub_signed(d))
        .unwrap_or(now_wall);
    let nanos = at.nanosecond();
    if nanos < 1_000_000_000
        && let Some(base_wall) = at.naive_utc().with_nanosecond(0)
        && let Some(base_mono) = mono.checked_sub(Duration::from_nanos(u64::from(nanos)))
    {
        cell.set(Some((base_mono, base_wall)));
    }
    at
}

/// Event classes of spec section 4; the first word of every routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventClass {
    Trades,
    Tickers,
    Orderbook,
    Klines,
    Liquidations,
    Orders,
    Executions,
    Positions,
    Balances,
    Other,
}

impl EventClass {
    /// Every class.
    pub const ALL: [EventClass; 10] = [
        Self::Trades,
        Self::Tickers,
        Self::Orderbook,
        Self::Klines,
        Self::Liquidations,
        Self::Orders,
        Self::Executions,
        Self::Positions,
        Self::Balances,
        Self::Other,
    ];

    /// Lower-case name, as in queue names and routing keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Trades => "trades",
            Self::Tickers => "tickers",
            Self::Orderbook => "orderbook",
            Self::Klines => "klines",
            Self::Liquidations => "liquidations",
            Self::Orders => "orders",
            Self::Executions => "executions",
            Self::Positions => "positions",
            Self::Balances => "balances",
            Self::Other => "other",
        }
    }

    /// Account events: never dropped, persistent, spooled while the broker is away.
    pub const fn is_private(self) -> bool {
        matches!(
            self,
            Self::Orders | Self::Executions | Self::Positions | Self::Balances
        )
    }

    /// The keep rule, decided here and nowhere else: an event of this class that arrived on
    /// `endpoint` is never dropped by a buffer (stages, tee, outbox) when its class is an
    /// account class or it came from the private endpoint (an unknown private topic is
    /// `other` but still private). A frame not yet classified asks as [`EventClass::Other`].
    pub const fn must_keep(self, endpoint: Endpoint) -> bool {
        self.is_private() || matches!(endpoint, Endpoint::Private)
    }
}

impl fmt::Display for EventClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown event class {s:?}"))
    }
}

/// An enriched event: the section 5 envelope, serialised once, plus the fields sinks route on.
#[derive(Debug, Clone)]
pub struct Event {
    /// uuid v7, unique per event; AMQP `message_id`.
    pub id: Uuid,
    /// 32 lowercase hex; AMQP `correlation_id` and header, DB column, error logs.
    pub trace_id: TraceId,
    /// Routing class.
    pub class: EventClass,
    /// Bybit topic as sent (`publicTrade.BTCUSDT`, `wallet`).
    pub topic: SharedStr,
    /// Endpoint the frame arrived on.
    pub endpoint: Endpoint,
    /// Category for public events and category-scoped private topics.
    pub category: Option<Category>,
    /// Instrument where the topic names one.
    pub symbol: Option<SharedStr>,
    /// Bybit's `type` (`snapshot`, `delta`) where present.
    pub kind: Option<SharedStr>,
    /// The frame's `ts` (ms), or `creationTime` for private frames.
    pub exchange_ts: Option<i64>,
    /// Wall-clock receive time of the frame.
    pub received_at: DateTime<Utc>,
    /// Monotonic receive time, for receive→confirm latency.
    pub received_mono: Instant,
    /// Per (category, topic) counter of this process, from 1.
    pub seq: u64,
    /// The envelope `key` (section 5): where it sits in `json`, or its text when the envelope
    /// had to escape it.
    pub key: EventKey,
    /// Fetched over REST after a gap (section 10) rather than received live.
    pub recovered: bool,
    /// The envelope JSON: AMQP body and `/ws` payload.
    pub json: Bytes,
    /// Byte range of `data` inside `json` (the frame's data, byte for byte).
    pub data: Range<usize>,
}

impl Event {
    // `routing_key()` is defined next to its rule, in the `subscriptions` wing (topic.rs).

    /// The frame's `data`, byte for byte as Bybit sent it.
    pub fn data(&self) -> &[u8] {
        &self.json[self.data.clone()]
    }

    /// The envelope `key`: deterministic per exchange event (section 5); AMQP header
    /// `event_key`.
    pub fn key(&self) -> &str {
        match &self.key {
            EventKey::InJson(range) => self
                .json
                .get(range.clone())
                .and_then(|k| std::str::from_utf8(k).ok())
                .unwrap_or_default(),
            EventKey::Text(k) => k,
        }
    }

    /// Whether the event was recovered over REST (the envelope's `recovered`).
    pub fn recovered(&self) -> bool {
        self.recovered
    }
}

/// The section 5 envelope as read back (the spool, the `/ws` relay of another instance's
/// messages): `data` and `key` are borrowed, so their places in the JSON are found without a
/// copy.
#[derive(Deserialize)]
struct Envelope<'a> {
    id: Uuid,
    trace_id: &'a str,
    class: EventClass,
    topic: String,
    category: Option<Category>,
    symbol: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    exchange_ts: Option<i64>,
    received_at: DateTime<Utc>,
    seq: u64,
    /// Absent in envelopes written before they had a key.
    #[serde(borrow, default)]
    key: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    recovered: bool,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

impl Event {
    /// Rebuilds the event of an envelope `json` (section 5) that arrived on `endpoint` (the
    /// envelope does not say: a private topic may name a category); received now. `None` when
    /// `json` is not an envelope.
    pub fn from_envelope(endpoint: Endpoint, json: Bytes) -> Option<Event> {
        let base = json.as_ptr() as usize;
        let env: Envelope<'_> = serde_json::from_slice(&json).ok()?;
        let offset = |s: &str| (s.as_ptr() as usize).wrapping_sub(base);
        let raw = env.data.get();
        let data = offset(raw)..offset(raw) + raw.len();
        let key = match env.key {
            Some(std::borrow::Cow::Borrowed(k)) => EventKey::InJson(offset(k)..offset(k) + k.len()),
            Some(std::borrow::Cow::Owned(k)) => EventKey::Text(k.into()),
            None => EventKey::Text("".into()),
        };
        let received_mono = Instant::now();
        let event = Event {
            id: env.id,
            trace_id: TraceId::try_from(env.trace_id).ok()?,
            class: env.class,
            topic: env.topic.into(),
            endpoint,
            category: env.category,
            symbol: env.symbol.map(Into::into),
            kind: env.kind.map(Into::into),
            exchange_ts: env.exchange_ts,
            received_at: env.received_at,
            received_mono,
            seq: env.seq,
            key,
            recovered: env.recovered,
            json: Bytes::new(),
            data,
        };
        Some(Event { json, ..event })
    }
}

/// Where an [`Event`]'s key is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKey {
    /// The characters between the quotes of the envelope's `key`, in `Event::json` (a key
    /// that needs no JSON escape: every key built from Bybit's ids and topics).
    InJson(Range<usize>),
    /// The key itself (a key the envelope escapes, or an event rebuilt without one).
    Text(SharedStr),
}

/// An event's trace id: 32 ASCII characters (enrich writes 32 lowercase hex, never all zero),
/// kept inline so an event carries it without an allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 32]);

impl TraceId {
    /// 32 ASCII bytes.
    pub(crate) fn from_ascii(bytes: [u8; 32]) -> Option<Self> {
        bytes.is_ascii().then_some(Self(bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Always ASCII (checked when built).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl TryFrom<&str> for TraceId {
    type Error = ();
    /// 32 ASCII characters.
    fn try_from(s: &str) -> Result<Self, ()> {
        let bytes: [u8; 32] = s.as_bytes().try_into().map_err(drop)?;
        Self::from_ascii(bytes).ok_or(())
    }
}

impl Deref for TraceId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod wall_clock_tests {
    use super::*;

    fn micros(d: TimeDelta) -> i64 {
        d.num_microseconds().unwrap_or(i64::MAX)
    }

    #[test]
    fn the_receive_time_follows_the_monotonic_clock_near_the_wall_clock() {
        let a = Instant::now();
        let at_a = wall_clock_at(a);
        assert!(micros(Utc::now() - at_a).abs() < 60_000_000);
        // Later instants keep their distance (the same base, or a fresh one a second later).
        let at_b = wall_clock_at(a + Duration::from_millis(5));
        assert!((micros(at_b - at_a) - 5_000).abs() <= 1_000);
        // An instant before the base: stepped back from a fresh base.
        let earlier = a.checked_sub(Duration::from_millis(3)).unwrap_or(a);
        let expected = micros(TimeDelta::from_std(a - earlier).unwrap_or_default());
        assert!((micros(at_a - wall_clock_at(earlier)) - expected).abs() <= 1_000);
    }
}
