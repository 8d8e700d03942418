//! Request and response bodies of `/api/v1/*` as the OpenAPI schema shows them.
//!
//! Enums (channel type, category, status) and validators (symbol pattern, lengths, limits) are
//! in the schema; rules it cannot express (depth per category, kline interval, private channels
//! without credentials) are checked by [`crate::subscriptions::TopicSpec`] in the handler. Fields that
//! poem-openapi would otherwise report only by type name get a `de_*` function so a parse error
//! names the field.

use chrono::{DateTime, Utc};
use poem_openapi::{
    Enum, Object,
    types::{ParseError, ParseFromJSON, ParseResult},
};
use serde_json::Value;
use uuid::Uuid;

use super::nullable::Nullable;
use crate::{event::Category, store::entity::subscriptions::Model, subscriptions::ChannelType};

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase", rename = "SubscriptionStatus")]
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

fn de_channel_type(value: Option<Value>) -> ParseResult<ChannelType> {
    named(
        "channel_type",
        value,
        "one of trades, ticker, orderbook, kline, liquidation, order, execution, position, balance",
    )
}

fn de_category(value: Option<Value>) -> ParseResult<Option<Category>> {
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

/// `POST /api/v1/subscriptions` body. `category`: default `linear` for public channels; for
/// order/execution/position it selects Bybit's category-scoped topic (`order.linear`); not
/// allowed for balance.
// Fields whose type is a named schema (`channel_type`, `category`) carry no doc of their own:
// poem-openapi would wrap their `$ref` in an `allOf` that generated clients refuse.
#[derive(Debug, Clone, Object)]
pub struct CreateSubscription {
    // The kind of stream.
    #[oai(deserialize_with = "de_channel_type")]
    pub channel_type: ChannelType,
    /// Instrument, required for public channels (`BTCUSDT`, `BTC-30JUN23-30000-C`).
    #[oai(
        deserialize_with = "de_symbol",
        validator(min_length = 2, max_length = 40, pattern = r"^[A-Z0-9_-]+$")
    )]
    pub symbol: Option<String>,
    // Described in the struct doc (see there).
    #[oai(deserialize_with = "de_category")]
    pub category: Option<Category>,
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
    pub channel_type: ChannelType,
    /// `null` for private all-in-one topics.
    pub category: Nullable<Category>,
    /// `null` for private channels.
    #[oai(nullable)]
    pub symbol: Option<String>,
    /// Bybit's v5 topic (`publicTrade.BTCUSDT`, `wallet`).
    pub topic: String,
    pub requesting_service: String,
    pub is_active: bool,
    pub status: StatusDto,
    /// Bybit's reason when `failed`.
    #[oai(nullable)]
    pub status_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the last event of this topic arrived (written about once a second).
    #[oai(nullable)]
    pub last_event_at: Option<DateTime<Utc>>,
}

/// A stored row the API cannot show: a word no version of the gateway writes.
#[derive(Debug, thiserror::Error)]
#[error("stored subscription {id} has an unknown {field} `{value}`")]
pub struct UnknownStoredValue {
    pub id: Uuid,
    pub field: &'static str,
    pub value: String,
}

impl TryFrom<Model> for Subscription {
    type Error = UnknownStoredValue;

    fn try_from(m: Model) -> Result<Self, Self::Error> {
        let unknown = |field, value: &str| UnknownStoredValue {
            id: m.id,
            field,
            value: value.to_owned(),
        };
        let channel_type = m
            .channel_type
            .parse::<ChannelType>()
            .map_err(|_| unknown("channel_type", &m.channel_type))?;
        let category = match m.category.as_deref() {
            None => None,
            Some(c) => Some(c.parse::<Category>().map_err(|_| unknown("category", c))?),
        };
        Ok(Self {
            id: m.id,
            channel_type,
            category: category.into(),
            symbol: m.symbol,
            topic: m.topic,
            requesting_service: m.requesting_service,
            is_active: m.is_active,
            status: StatusDto::parse(&m.status),
            status_message: m.status_message,
            created_at: m.created_at,
            updated_at: m.updated_at,
            last_event_at: m.last_event_at,
        })
    }
}

/// `DELETE /api/v1/subscriptions/by-service/{service_name}` result.
#[derive(Debug, Clone, Object)]
pub struct Cancelled {
    /// Active subscriptions cancelled.
    pub cancelled: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(channel_type: &str, category: Option<&str>) -> Model {
        Model {
            id: Uuid::nil(),
            channel_type: channel_type.to_owned(),
            category: category.map(str::to_owned),
            symbol: Some("BTCUSDT".to_owned()),
            depth: None,
            interval: None,
            topic: "publicTrade.BTCUSDT".to_owned(),
            endpoint: "linear".to_owned(),
            requesting_service: "svc".to_owned(),
            is_active: true,
            status: "active".to_owned(),
            status_message: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            last_event_at: None,
        }
    }

    #[test]
    fn stored_words_map_to_the_api_enums() {
        let sub = Subscription::try_from(row("orderbook", Some("spot"))).expect("known words");
        assert_eq!(sub.channel_type, ChannelType::Orderbook);
        assert_eq!(sub.category, Some(Category::Spot));
        assert_eq!(sub.status, StatusDto::Active);
        let sub = Subscription::try_from(row("balance", None)).expect("no category");
        assert_eq!(sub.category, None);
    }

    #[test]
    fn an_unknown_stored_word_is_an_error_naming_the_field_not_a_default() {
        let err = Subscription::try_from(row("candles", Some("linear"))).unwrap_err();
        assert_eq!((err.field, err.value.as_str()), ("channel_type", "candles"));
        let err = Subscription::try_from(row("trades", Some("futures"))).unwrap_err();
        assert_eq!(err.field, "category");
        assert!(
            err.to_string().contains("unknown category `futures`"),
            "{err}"
        );
    }
}
