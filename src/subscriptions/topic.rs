//! The topic vocabulary, one rule each: the user's words for a subscription (channel type,
//! symbol, category, depth, interval) and Bybit's v5 topic they map to ([`TopicSpec`]); a topic
//! string as a client writes it → registry key ([`parse_topic`]); a topic → its event class
//! ([`class_of`]); the routing key of an event or a subscription ([`routing_key`]). Shared by the
//! REST API, `/ws`, the pipeline file, the classifier and the RabbitMQ sink, so all agree.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use super::TopicKey;
use crate::{
    event::{Category, Endpoint, Event, EventClass},
    store::entity::subscriptions::Model,
};

/// What to subscribe to: the channel types of the REST API (spec section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, poem_openapi::Enum)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum ChannelType {
    Trades,
    Ticker,
    Orderbook,
    Kline,
    Liquidation,
    Order,
    Execution,
    Position,
    Balance,
}

impl ChannelType {
    /// Every channel type.
    pub const ALL: [ChannelType; 9] = [
        Self::Trades,
        Self::Ticker,
        Self::Orderbook,
        Self::Kline,
        Self::Liquidation,
        Self::Order,
        Self::Execution,
        Self::Position,
        Self::Balance,
    ];

    /// The API word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Trades => "trades",
            Self::Ticker => "ticker",
            Self::Orderbook => "orderbook",
            Self::Kline => "kline",
            Self::Liquidation => "liquidation",
            Self::Order => "order",
            Self::Execution => "execution",
            Self::Position => "position",
            Self::Balance => "balance",
        }
    }

    /// Account channels, on the authenticated private endpoint.
    pub const fn is_private(self) -> bool {
        matches!(
            self,
            Self::Order | Self::Execution | Self::Position | Self::Balance
        )
    }
}

impl fmt::Display for ChannelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelType {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(TopicError::UnknownChannel)
    }
}

/// Order-book depths Bybit serves per category.
pub(crate) fn allowed_depths(category: Category) -> &'static [u32] {
    match category {
        Category::Spot => &[1, 50, 200, 1000],
        Category::Linear | Category::Inverse => &[1, 50, 200, 500, 1000],
        Category::Option => &[25, 100],
    }
}

/// Kline intervals Bybit serves.
pub const KLINE_INTERVALS: [&str; 13] = [
    "1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W", "M",
];

/// A request that cannot become a topic; `field()` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error(
        "channel_type must be one of trades, ticker, orderbook, kline, liquidation, order, execution, position, balance"
    )]
    UnknownChannel,
    #[error("symbol is required for {0} subscriptions")]
    MissingSymbol(ChannelType),
    #[error("symbol must be 2-40 characters of A-Z, 0-9, '-' or '_'")]
    BadSymbol,
    #[error("depth {depth} is not offered for {category}; allowed: {allowed:?}")]
    BadDepth {
        depth: u32,
        category: Category,
        allowed: &'static [u32],
    },
    #[error("interval is required for kline subscriptions; one of {KLINE_INTERVALS:?}")]
    MissingInterval,
    #[error("interval {0:?} is not one of {KLINE_INTERVALS:?}")]
    BadInterval(String),
    #[error("{channel} is not offered for category {category}")]
    CategoryNotOffered {
        channel: ChannelType,
        category: Category,
    },
    #[error("balance subscriptions take no category")]
    CategoryNotAllowed,
    #[error("the routing key would be {0} bytes; AMQP allows at most {MAX_ROUTING_KEY}")]
    RoutingKeyTooLong(usize),
}

/// Longest routing key (an AMQP short string).
pub const MAX_ROUTING_KEY: usize = 255;

/// Refuses a routing key AMQP cannot carry, at subscribe time (REST 400 naming `symbol`, a
/// `/ws` subscribe error) rather than when its first event is published.
pub fn check_routing_key(key: &str) -> Result<(), TopicError> {
    if key.len() > MAX_ROUTING_KEY {
        return Err(TopicError::RoutingKeyTooLong(key.len()));
    }
    Ok(())
}

impl TopicError {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Self::UnknownChannel => "channel_type",
            Self::MissingSymbol(_) | Self::BadSymbol => "symbol",
            Self::BadDepth { .. } => "depth",
            Self::MissingInterval | Self::BadInterval(_) => "interval",
            Self::CategoryNotOffered { .. } | Self::CategoryNotAllowed => "category",
            Self::RoutingKeyTooLong(_) => "symbol",
        }
    }
}

/// A validated subscription request: everything needed to name the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub channel_type: ChannelType,
    /// For public channels always set (default linear); for private ones the scope, if any.
    pub category: Option<Category>,
    pub symbol: Option<String>,
    pub depth: Option<u32>,
    pub interval: Option<String>,
}

impl TopicSpec {
    /// Validates the parts of a request and fills defaults (category linear for public
    /// channels; depth 50, or 25 for option).
    pub fn new(
        channel_type: ChannelType,
        category: Option<Category>,
        symbol: Option<&str>,
        depth: Option<u32>,
        interval: Option<&str>,
    ) -> Result<Self, TopicError> {
        if channel_type.is_private() {
            return Self::private(channel_type, category);
        }
        let category = category.unwrap_or(Category::Linear);
        let symbol = symbol.map(str::trim).filter(|s| !s.is_empty());
        let symbol = symbol.ok_or(TopicError::MissingSymbol(channel_type))?;
        let valid = (2..=40).contains(&symbol.len())
            && symbol
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(TopicError::BadSymbol);
        }
        let not_offered = TopicError::CategoryNotOffered {
            channel: channel_type,
            category,
        };
        let (depth, interval) = match channel_type {
            ChannelType::Orderbook => {
                let allowed = allowed_depths(category);
                let depth = depth.unwrap_or(if category == Category::Option { 25 } else { 50 });
                if !allowed.contains(&depth) {
                    return Err(TopicError::BadDepth {
                        depth,
                        category,
                        allowed,
                    });
                }
                (Some(depth), None)
            }
            ChannelType::Kline => {
                if category == Category::Option {
                    return Err(not_offered);
                }
                let interval = interval.ok_or(TopicError::MissingInterval)?;
                if !KLINE_INTERVALS.contains(&interval) {
                    return Err(TopicError::BadInterval(interval.to_owned()));
                }
                (None, Some(interval.to_owned()))
            }
            ChannelType::Liquidation if matches!(category, Category::Spot | Category::Option) => {
                return Err(not_offered);
            }
            _ => (None, None),
        };
        let spec = Self {
            channel_type,
            category: Some(category),
            symbol: Some(symbol.to_owned()),
            depth,
            interval,
        };
        check_routing_key(&spec.routing_key())?;
        Ok(spec)
    }

    fn private(channel_type: ChannelType, category: Option<Category>) -> Result<Self, TopicError> {
        match (channel_type, category) {
            (ChannelType::Balance, Some(_)) => return Err(TopicError::CategoryNotAllowed),
            (ChannelType::Position, Some(Category::Spot)) => {
                return Err(TopicError::CategoryNotOffered {
                    channel: channel_type,
                    category: Category::Spot,
                });
            }
            _ => {}
        }
        Ok(Self {
            channel_type,
            category,
            symbol: None,
            depth: None,
            interval: None,
        })
    }

    /// Bybit's v5 topic.
    pub fn topic(&self) -> String {
        let symbol = self.symbol.as_deref().unwrap_or_default();
        let scoped = |base: &str| match self.category {
            Some(c) => format!("{base}.{c}"),
            None => base.to_owned(),
        };
        match self.channel_type {
            ChannelType::Trades => format!("publicTrade.{symbol}"),
            ChannelType::Ticker => format!("tickers.{symbol}"),
            ChannelType::Orderbook => format!("orderbook.{}.{symbol}", self.depth.unwrap_or(50)),
            ChannelType::Kline => {
                format!("kline.{}.{symbol}", self.interval.as_deref().unwrap_or("1"))
            }
            ChannelType::Liquidation => format!("allLiquidation.{symbol}"),
            ChannelType::Order => scoped("order"),
            ChannelType::Execution => scoped("execution"),
            ChannelType::Position => scoped("position"),
            ChannelType::Balance => "wallet".to_owned(),
        }
    }

    /// The endpoint the topic is subscribed on.
    pub fn endpoint(&self) -> Endpoint {
        if self.channel_type.is_private() {
            Endpoint::Private
        } else {
            Endpoint::Public(self.category.unwrap_or(Category::Linear))
        }
    }

    /// The event class this topic's events are routed as.
    pub fn class(&self) -> EventClass {
        match self.channel_type {
            ChannelType::Trades => EventClass::Trades,
            ChannelType::Ticker => EventClass::Tickers,
            ChannelType::Orderbook => EventClass::Orderbook,
            ChannelType::Kline => EventClass::Klines,
            ChannelType::Liquidation => EventClass::Liquidations,
            ChannelType::Order => EventClass::Orders,
            ChannelType::Execution => EventClass::Executions,
            ChannelType::Position => EventClass::Positions,
            ChannelType::Balance => EventClass::Balances,
        }
    }

    /// The routing key of this topic's events (spec section 4); per-service queues bind with it.
    pub fn routing_key(&self) -> String {
        routing_key(
            self.class(),
            self.endpoint(),
            self.category,
            self.symbol.as_deref(),
        )
    }

    /// The registry key of this topic.
    pub fn key(&self) -> TopicKey {
        TopicKey::new(self.endpoint(), self.topic())
    }

    /// Rebuilds the validated request of a stored row (`None` if the row no longer validates).
    pub(crate) fn of_row(row: &Model) -> Option<Self> {
        let channel: ChannelType = row.channel_type.parse().ok()?;
        let category = match &row.category {
            Some(c) => Some(c.parse::<Category>().ok()?),
            None => None,
        };
        Self::new(
            channel,
            category,
            row.symbol.as_deref(),
            row.depth.and_then(|d| u32::try_from(d).ok()),
            row.interval.as_deref(),
        )
        .ok()
    }
}

/// The class of a Bybit topic, from its first dot segment (`other` for unknown topics).
pub(crate) fn class_of(topic: &str) -> EventClass {
    // A byte search: cheaper per frame than a `char` pattern.
    let head = match topic.bytes().position(|b| b == b'.') {
        Some(dot) => &topic[..dot],
        None => topic,
    };
    match head {
        "publicTrade" => EventClass::Trades,
        "tickers" => EventClass::Tickers,
        "orderbook" => EventClass::Orderbook,
        "kline" => EventClass::Klines,
        "allLiquidation" | "liquidation" => EventClass::Liquidations,
        "wallet" => EventClass::Balances,
        h if h.starts_with("order") => EventClass::Orders,
        h if h.starts_with("execution") => EventClass::Executions,
        h if h.starts_with("position") => EventClass::Positions,
        _ => EventClass::Other,
    }
}

/// The routing key (spec section 4): `<class>.<category>.<symbol>` for public events,
/// `<class>.private` for private ones (a private class or the private endpoint); a public event
/// without a symbol is `<class>.<category>`, without a category `none`.
#[inline]
pub(crate) fn routing_key(
    class: EventClass,
    endpoint: Endpoint,
    category: Option<Category>,
    symbol: Option<&str>,
) -> String {
    if class.is_private() || endpoint == Endpoint::Private {
        return format!("{class}.private");
    }
    let category = category.map_or("none", Category::as_str);
    match symbol {
        Some(symbol) => format!("{class}.{category}.{symbol}"),
        None => format!("{class}.{category}"),
    }
}

impl TopicKey {
    /// The routing key of this topic's events (the rule above, with the class, category and
    /// symbol the classifier finds in the topic: a public topic's symbol is its last dot
    /// segment). Several topics may share one key (`orderbook.50.X` and `orderbook.200.X`,
    /// every private topic of a class), so a consumer bound with it still checks the topic.
    pub fn routing_key(&self) -> String {
        let symbol = match self.endpoint {
            Endpoint::Public(_) => self
                .topic
                .rfind('.')
                .map(|dot| &self.topic[dot + 1..])
                .filter(|s| !s.is_empty()),
            Endpoint::Private => None,
        };
        routing_key(
            class_of(&self.topic),
            self.endpoint,
            self.endpoint.category(),
            symbol,
        )
    }
}

/// The binding pattern of the class queue `<prefix>.<class>`: every routing key of the class.
pub(crate) fn class_pattern(class: EventClass) -> String {
    format!("{class}.#")
}

impl Event {
    /// The routing key of this event (the rule: `subscriptions::topic::routing_key`).
    #[inline]
    pub fn routing_key(&self) -> String {
        routing_key(
            self.class,
            self.endpoint,
            self.category,
            self.symbol.as_deref(),
        )
    }
}

/// Longest topic string accepted from a client (Bybit's longest real topics are well under this).
pub(crate) const MAX_TOPIC_LEN: usize = 64;

/// Why a topic string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
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
pub(crate) fn parse_topic(
    topic: &str,
    category: Option<Category>,
    private_available: bool,
) -> Result<TopicKey, ParseError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(ParseError::BadLength(
            topic.chars().take(MAX_TOPIC_LEN).collect(),
        ));
    }
    let parts: Vec<&str> = topic.split('.').collect();
    let invalid = |e: TopicError| ParseError::Invalid {
        topic: topic.to_owned(),
        reason: e.to_string(),
    };
    let unknown = || ParseError::UnknownTopic(topic.to_owned());
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
        return Err(ParseError::PrivateUnavailable(topic.to_owned()));
    }
    Ok(key)
}

/// The key of `publicTrade.<symbol>` on linear: what a `/ws` `action` subscription means.
pub(crate) fn trade_key(symbol: &str) -> Result<TopicKey, ParseError> {
    TopicSpec::new(
        ChannelType::Trades,
        Some(Category::Linear),
        Some(symbol),
        None,
        None,
    )
    .map(|s| s.key())
    .map_err(|e| ParseError::Invalid {
        topic: format!("publicTrade.{symbol}"),
        reason: e.to_string(),
    })
}

/// The symbol of a linear trade key ([`trade_key`]'s inverse); `None` for any other key.
pub(crate) fn trade_symbol(key: &TopicKey) -> Option<&str> {
    if key.endpoint != Endpoint::Public(Category::Linear) {
        return None;
    }
    key.topic.strip_prefix("publicTrade.")
}

#[cfg(test)]
#[path = "topic_tests.rs"]
mod tests;
