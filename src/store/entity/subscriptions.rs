//! `subscriptions`: one row per REST subscription, active or cancelled.

use sea_orm::entity::prelude::*;

/// A subscription row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subscriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// API channel type (`trades`, `balance`, …).
    pub channel_type: String,
    /// `spot|linear|inverse|option`; `None` for private all-in-one topics.
    pub category: Option<String>,
    pub symbol: Option<String>,
    pub depth: Option<i32>,
    pub interval: Option<String>,
    /// Bybit's v5 topic.
    pub topic: String,
    /// Endpoint label (`linear`, …, `private`): with `topic`, the registry key.
    pub endpoint: String,
    pub requesting_service: String,
    pub is_active: bool,
    /// `pending|active|failed|resyncing|cancelled`.
    pub status: String,
    pub status_message: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_event_at: Option<DateTimeUtc>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
