//! Request and response bodies of `/api/v1/*` as the OpenAPI schema shows them.
//!
//! Enums (channel type, category, status) and validators (symbol pattern, lengths, limits) are
//! in the schema; rules it cannot express (depth per category, kline interval, private channels
//! without credentials) are checked by [`crate::topics::TopicSpec`] in the handler. Fields that
//! poem-openapi would otherwise report only by type name get a `de_*` function so a parse error
//! names the field.

use chrono::{DateTime, Utc};
use poem_openapi::{
    Enum, Object,
    types::{ParseError, ParseFromJSON, ParseResult},
};
use serde_json::Value;
use uuid::Uuid;

use crate::{event::Category, store::entity::subscriptions::Model, topics::ChannelType};

/// What to subscribe to (spec section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ChannelTypeDto {
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

impl From<ChannelTypeDto> for ChannelType {
    fn from(c: ChannelTypeDto) -> Self {
        match c {
            ChannelTypeDto::Trades => Self::Trades,
            ChannelTypeDto::Ticker => Self::Ticker,
            ChannelTypeDto::Orderbook => Self::Orderbook,
            ChannelTypeDto::Kline => Self::Kline,
            ChannelTypeDto::Liquidation => Self::Liquidation,
            ChannelTypeDto::Order => Self::Order,
            ChannelTypeDto::Execution => Self::Execution,
            ChannelTypeDto::Position => Self::Position,
            ChannelTypeDto::Balance => Self::Balance,
        }
    }
}

/// A Bybit product category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum CategoryDto {
    Spot,
    Linear,
    Inverse,
    Option,
}

impl From<CategoryDto> for Category {
    fn from(c: CategoryDto) -> Self {
        match c {
            CategoryDto::Spot => Self::Spot,
            CategoryDto::Linear => Self::Linear,
            CategoryDto::Inverse => Self::Inverse,
            CategoryDto::Option => Self::Option,
        }
    }
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum StatusDto {
    /// Wanted, not yet acknowledged by Bybit (also while its connection is down).
    Pending,
    /// Acknowledged by Bybit.
    Active,
    /// Rejected by Bybit; `status_message` holds Bybit's reason.
    Failed,
    /// An order-book gap was seen; resubscribing for a fresh snapshot.
    Resyncing,
    /// Cancelled through the API.
    Cancelled,
}

impl StatusDto {
    fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "failed" => Self::Failed,
            "resyncing" => Self::Resyncing,
            "cancelled" => Self::Cancelled,
            _ => Self::Pending,
        }
    }
}

fn named<T: ParseFromJSON>(field: &str, value: Option<Value>, expected: &str) -> ParseResult<T> {
    T::parse_from_json(value)
        .map_err(|_| ParseError::custom(format!("field `{field}` must be {expected}")))
}

fn de_channel_type(value: Option<Value>) -> ParseResult<ChannelTypeDto> {
    named(
        "channel_type",
        value,
        "one of trades, ticker, orderbook, kline, liquidation, order, execution, position, balance",
    )
}

fn de_category(value: Option<Value>) -> ParseResult<Option<CategoryDto>> {
    named(
        "category",
        value,
        "one of spot, linear, inverse, option (or absent)",
    )
}

fn de_symbol(value: Option<Value>) -> ParseResult<Option<String>> {
    named("symbol", value, "a string such as \"BTCUSDT\"")
}

fn de_depth(value: Option<Value>) -> ParseResult<Option<u32>> {
    named("depth", value, "a positive integer")
}

fn de_interval(value: Option<Value>) -> ParseResult<Option<String>> {
    named("interval", value, "a string such as \"1\", \"60\" or \"D\"")
}

fn de_service(value: Option<Value>) -> ParseResult<String> {
    named("requesting_service", value, "a non-empty string (required)")
}

/// `POST /api/v1/subscriptions` body.
#[derive(Debug, Clone, Object)]
pub struct CreateSubscription {
    /// The kind of stream.
    #[oai(deserialize_with = "de_channel_type")]
    pub channel_type: ChannelTypeDto,
    /// Instrument, required for public channels (`BTCUSDT`, `BTC-30JUN23-30000-C`).
    #[oai(
        deserialize_with = "de_symbol",
        validator(min_length = 2, max_length = 40, pattern = r"^[A-Z0-9_-]+$")
    )]
    pub symbol: Option<String>,
    /// Default `linear` for public channels; for order/execution/position it selects Bybit's
    /// category-scoped topic (`order.linear`); not allowed for balance.
    #[oai(deserialize_with = "de_category")]
    pub category: Option<CategoryDto>,
    /// Order-book depth; allowed per category as on Bybit (spot 1/50/200/1000, linear and
    /// inverse 1/50/200/500/1000, option 25/100); default 50 (25 for option).
    #[oai(
        deserialize_with = "de_depth",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub depth: Option<u32>,
    /// Kline interval, required for kline: 1 3 5 15 30 60 120 240 360 720 D W M.
    #[oai(
        deserialize_with = "de_interval",
        validator(pattern = r"^(1|3|5|15|30|60|120|240|360|720|D|W|M)$")
    )]
    pub interval: Option<String>,
    /// The service that wants the events (its queues are `ws-gateway.<class>.<service>`).
    #[oai(
        deserialize_with = "de_service",
        validator(min_length = 1, max_length = 128, pattern = r"^[A-Za-z0-9._-]+$")
    )]
    pub requesting_service: String,
}

/// A subscription (spec section 6).
#[derive(Debug, Clone, Object)]
pub struct Subscription {
    pub id: Uuid,
    pub channel_type: ChannelTypeDto,
    /// `null` for private all-in-one topics.
    pub category: Option<CategoryDto>,
    pub symbol: Option<String>,
    /// Bybit's v5 topic (`publicTrade.BTCUSDT`, `wallet`).
    pub topic: String,
    pub requesting_service: String,
    pub is_active: bool,
    pub status: StatusDto,
    /// Bybit's reason when `failed`.
    pub status_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the last event of this topic arrived (written about once a second).
    pub last_event_at: Option<DateTime<Utc>>,
}

impl From<Model> for Subscription {
    fn from(m: Model) -> Self {
        let channel_type = ChannelTypeDto::from_str_lossy(&m.channel_type);
        let category = m.category.as_deref().and_then(CategoryDto::from_str_opt);
        Self {
            id: m.id,
            channel_type,
            category,
            symbol: m.symbol,
            topic: m.topic,
            requesting_service: m.requesting_service,
            is_active: m.is_active,
            status: StatusDto::parse(&m.status),
            status_message: m.status_message,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_event_at: m.last_event_at,
        }
    }
}

impl ChannelTypeDto {
    fn from_str_lossy(s: &str) -> Self {
        use ChannelTypeDto::*;
        [
            Trades,
            Ticker,
            Orderbook,
            Kline,
            Liquidation,
            Order,
            Execution,
            Position,
            Balance,
        ]
        .into_iter()
        .find(|c| ChannelType::from(*c).as_str() == s)
        .unwrap_or(Trades)
    }

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        ChannelType::from(self).as_str()
    }
}

impl CategoryDto {
    fn from_str_opt(s: &str) -> Option<Self> {
        [Self::Spot, Self::Linear, Self::Inverse, Self::Option]
            .into_iter()
            .find(|c| Category::from(*c).as_str() == s)
    }

    /// The stored word.
    pub fn as_str(self) -> &'static str {
        Category::from(self).as_str()
    }
}

/// `DELETE /api/v1/subscriptions/by-service/{service_name}` result.
#[derive(Debug, Clone, Object)]
pub struct Cancelled {
    /// Active subscriptions cancelled.
    pub cancelled: u64,
}
