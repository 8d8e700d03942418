//! The user's words for a subscription (channel type, symbol, category, depth, interval) and
//! Bybit's v5 topic they map to. Shared by the REST API, `/ws` and the pipeline file, so the
//! three agree on every rule.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{
    event::{Category, Endpoint, EventClass},
    source::subscriptions::TopicKey,
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
pub fn allowed_depths(category: Category) -> &'static [u32] {
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
        Ok(Self {
            channel_type,
            category: Some(category),
            symbol: Some(symbol.to_owned()),
            depth,
            interval,
        })
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
        let class = self.class();
        match (&self.symbol, self.channel_type.is_private()) {
            (Some(symbol), false) => {
                format!(
                    "{class}.{}.{symbol}",
                    self.category.unwrap_or(Category::Linear)
                )
            }
            _ => format!("{class}.private"),
        }
    }

    /// The registry key of this topic.
    pub fn key(&self) -> TopicKey {
        TopicKey::new(self.endpoint(), self.topic())
    }
}

#[cfg(test)]
mod tests;
