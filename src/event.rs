//! Types that cross stage boundaries: where a frame came from ([`Endpoint`], [`Category`]), the
//! untouched frame the source emits ([`RawFrame`]), and the enriched [`Event`] that sinks consume.
//!
//! Stages never import each other; they meet here.

use std::{fmt, ops::Range, str::FromStr, time::Instant};

use async_tungstenite::tungstenite::Utf8Bytes;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// One data frame exactly as read off a Bybit socket. Control frames (pongs, acks) never leave
/// the source.
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
    pub text: Utf8Bytes,
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
    pub trace_id: String,
    /// Routing class.
    pub class: EventClass,
    /// Bybit topic as sent (`publicTrade.BTCUSDT`, `wallet`).
    pub topic: String,
    /// Endpoint the frame arrived on.
    pub endpoint: Endpoint,
    /// Category for public events and category-scoped private topics.
    pub category: Option<Category>,
    /// Instrument where the topic names one.
    pub symbol: Option<String>,
    /// Bybit's `type` (`snapshot`, `delta`) where present.
    pub kind: Option<String>,
    /// The frame's `ts` (ms), or `creationTime` for private frames.
    pub exchange_ts: Option<i64>,
    /// Wall-clock receive time of the frame.
    pub received_at: DateTime<Utc>,
    /// Monotonic receive time, for receive→confirm latency.
    pub received_mono: Instant,
    /// Per (category, topic) counter of this process, from 1.
    pub seq: u64,
    /// The envelope JSON: AMQP body and `/ws` payload.
    pub json: Bytes,
    /// Byte range of `data` inside `json` (the frame's data, byte for byte).
    pub data: Range<usize>,
}

impl Event {
    /// The frame's `data`, byte for byte as Bybit sent it.
    pub fn data(&self) -> &[u8] {
        &self.json[self.data.clone()]
    }

    /// `<class>.<category>.<symbol>` for public events, `<class>.private` for private ones.
    pub fn routing_key(&self) -> String {
        if self.class.is_private() || self.endpoint == Endpoint::Private {
            return format!("{}.private", self.class);
        }
        let category = self.category.map_or("none", Category::as_str);
        match &self.symbol {
            Some(symbol) => format!("{}.{}.{}", self.class, category, symbol),
            None => format!("{}.{}", self.class, category),
        }
    }
}
