//! Queries on `subscriptions`, in the table's own terms. The subscription service
//! (`Subscriptions`, in the subscriptions wing) writes rows and updates their status and
//! `last_event_at` by (endpoint, topic).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set, sea_query::Expr,
};
use uuid::Uuid;

use super::entity::subscriptions::{ActiveModel, Column, Entity, Model};
use crate::event::{Category, Endpoint};

/// Filters of `GET /api/v1/subscriptions`; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub is_active: Option<bool>,
    pub channel_type: Option<String>,
    pub category: Option<String>,
    pub symbol: Option<String>,
    pub requesting_service: Option<String>,
}

/// A new row: a validated request, its topic and endpoint, and who asked.
#[derive(Debug, Clone)]
pub struct NewRow<'a> {
    pub channel_type: &'a str,
    pub category: Option<Category>,
    pub symbol: Option<&'a str>,
    pub depth: Option<u32>,
    pub interval: Option<&'a str>,
    pub topic: String,
    pub endpoint: Endpoint,
    pub service: &'a str,
}

/// The active row of (category, topic, service), if any.
pub async fn find_active(
    db: &impl ConnectionTrait,
    category: Option<Category>,
    topic: &str,
    service: &str,
) -> Result<Option<Model>, sea_orm::DbErr> {
    let category = match category {
        Some(c) => Column::Category.eq(c.as_str()),
        None => Column::Category.is_null(),
    };
    Entity::find()
        .filter(Column::IsActive.eq(true))
        .filter(category)
        .filter(Column::Topic.eq(topic))
        .filter(Column::RequestingService.eq(service))
        .one(db)
        .await
}

/// How many active rows `service` holds (the per-service limit).
pub async fn count_active_of(
    db: &impl ConnectionTrait,
    service: &str,
) -> Result<u64, sea_orm::DbErr> {
    Entity::find()
        .filter(Column::IsActive.eq(true))
        .filter(Column::RequestingService.eq(service))
        .count(db)
        .await
}

/// Inserts a new active, pending row.
pub async fn insert(db: &impl ConnectionTrait, row: NewRow<'_>) -> Result<Model, sea_orm::DbErr> {
    let now = Utc::now();
    ActiveModel {
        id: Set(Uuid::now_v7()),
        channel_type: Set(row.channel_type.to_owned()),
        category: Set(row.category.map(|c| c.as_str().to_owned())),
        symbol: Set(row.symbol.map(str::to_owned)),
        depth: Set(row.depth.and_then(|d| i32::try_from(d).ok())),
        interval: Set(row.interval.map(str::to_owned)),
        topic: Set(row.topic),
        endpoint: Set(row.endpoint.label().to_owned()),
        requesting_service: Set(row.service.to_owned()),
        is_active: Set(true),
        status: Set("pending".to_owned()),
        status_message: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        last_event_at: Set(None),
    }
    .insert(db)
    .await
}

/// One row by id.
pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Model>, sea_orm::DbErr> {
    Entity::find_by_id(id).one(db).await
}

/// Rows matching `filter`, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &ListFilter,
) -> Result<Vec<Model>, sea_orm::DbErr> {
    let mut cond = Condition::all();
    if let Some(v) = filter.is_active {
        cond = cond.add(Column::IsActive.eq(v));
    }
    if let Some(v) = &filter.channel_type {
        cond = cond.add(Column::ChannelType.eq(v.as_str()));
    }
    if let Some(v) = &filter.category {
        cond = cond.add(Column::Category.eq(v.as_str()));
    }
    if let Some(v) = &filter.symbol {
        cond = cond.add(Column::Symbol.eq(v.as_str()));
    }
    if let Some(v) = &filter.requesting_service {
        cond = cond.add(Column::RequestingService.eq(v.as_str()));
    }
    Entity::find()
        .filter(cond)
        .order_by_asc(Column::CreatedAt)
        .order_by_asc(Column::Id)
        .all(db)
        .await
}

/// Every active row (restore at startup).
pub async fn active(db: &impl ConnectionTrait) -> Result<Vec<Model>, sea_orm::DbErr> {
    list(
        db,
        &ListFilter {
            is_active: Some(true),
            ..ListFilter::default()
        },
    )
    .await
}

/// Marks a row cancelled; returns the updated row (unchanged when already cancelled).
pub async fn cancel(db: &impl ConnectionTrait, row: Model) -> Result<Model, sea_orm::DbErr> {
    if !row.is_active {
        return Ok(row);
    }
    let mut am: ActiveModel = row.into();
    am.is_active = Set(false);
    am.status = Set("cancelled".to_owned());
    am.updated_at = Set(Utc::now());
    am.update(db).await
}

/// Writes a topic's status to every active row of that topic; returns rows changed.
pub async fn set_status(
    db: &impl ConnectionTrait,
    endpoint: Endpoint,
    topic: &str,
    status: &str,
    message: Option<&str>,
) -> Result<u64, sea_orm::DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::Status, Expr::value(status))
        .col_expr(
            Column::StatusMessage,
            Expr::value(message.map(str::to_owned)),
        )
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::IsActive.eq(true))
        .filter(Column::Endpoint.eq(endpoint.label()))
        .filter(Column::Topic.eq(topic))
        .filter(Column::Status.ne(status))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Moves `last_event_at` of every active row of a topic forward.
pub async fn touch_last_event(
    db: &impl ConnectionTrait,
    endpoint: Endpoint,
    topic: &str,
    at: DateTime<Utc>,
) -> Result<u64, sea_orm::DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::LastEventAt, Expr::value(at))
        .filter(Column::IsActive.eq(true))
        .filter(Column::Endpoint.eq(endpoint.label()))
        .filter(Column::Topic.eq(topic))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
