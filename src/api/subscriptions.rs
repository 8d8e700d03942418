//! `/api/v1/subscriptions`: create, list, get, cancel, cancel by service.
//!
//! Handlers write the row first and only then edit the desired state (registry, bindings), so
//! a failed database write changes nothing upstream. The source and the RabbitMQ sink reconcile
//! toward the desired state on their own.

use std::time::Duration;

use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use sea_orm::SqlErr;
use uuid::Uuid;

use super::{
    ApiKey, ApiTags,
    error::{ApiError, ErrorBody, ErrorResponse, error_response},
    types::{Cancelled, CreateSubscription, Subscription},
};
use crate::{
    event::Category,
    sink::bindings::Binding,
    state::AppState,
    store::{entity::subscriptions::Model, subscriptions as q},
    topics::{ChannelType, TopicSpec},
};

/// The requester name of the pipeline file's startup subscriptions (`/ws` clients are `ws:<id>`,
/// which the schema's pattern already rules out).
const RESERVED_SERVICE: &str = "pipeline";

/// How long a create waits for the broker to hold the new binding (when a broker is set).
const BIND_WAIT: Duration = Duration::from_secs(2);

/// The subscription operations.
#[derive(Debug, Default)]
pub struct SubscriptionsApi;

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "create_bad_request")]
enum CreateResponse {
    /// A new subscription.
    #[oai(status = 201)]
    Created(Json<Subscription>),
    /// The same active (category, topic, requesting_service) already existed; returned as is.
    #[oai(status = 200)]
    Existing(Json<Subscription>),
    /// Invalid input (the message names the field), or a private channel without Bybit
    /// credentials (`private_channel_unavailable`). Nothing changed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `X-API-Key`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The database failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}
error_response!(CreateResponse, create_bad_request);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "list_bad_request")]
enum ListResponse {
    /// Matching subscriptions, oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<Subscription>>),
    /// A filter value is invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `X-API-Key`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The database failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}
error_response!(ListResponse, list_bad_request);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "one_bad_request")]
enum OneResponse {
    /// The subscription (for DELETE: as cancelled).
    #[oai(status = 200)]
    Ok(Json<Subscription>),
    /// The id is not a UUID.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `X-API-Key`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No subscription has this id.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The database failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}
error_response!(OneResponse, one_bad_request, NotFound);

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "by_service_bad_request")]
enum ByServiceResponse {
    /// How many active subscriptions were cancelled (0 is fine).
    #[oai(status = 200)]
    Ok(Json<Cancelled>),
    /// Invalid service name.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `X-API-Key`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The database failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}
error_response!(ByServiceResponse, by_service_bad_request);

#[OpenApi(prefix_path = "/api/v1/subscriptions", tag = "ApiTags::Subscriptions")]
impl SubscriptionsApi {
    /// Subscribe a service to a Bybit stream.
    ///
    /// Idempotent per active (category, topic, requesting_service): the same request again
    /// returns the existing subscription with 200. The topic is subscribed upstream once, however
    /// many services want it.
    #[oai(path = "/", method = "post", operation_id = "create_subscription")]
    async fn create(
        &self,
        state: Data<&AppState>,
        _key: ApiKey,
        body: Json<CreateSubscription>,
    ) -> CreateResponse {
        let result = async {
            let (row, created) = create(&state, body.0).await?;
            Ok::<_, ApiError>((Subscription::try_from(row)?, created))
        };
        match result.await {
            Ok((sub, true)) => CreateResponse::Created(Json(sub)),
            Ok((sub, false)) => CreateResponse::Existing(Json(sub)),
            Err(e) => CreateResponse::from_api_error(e),
        }
    }

    /// List subscriptions, optionally filtered.
    #[oai(path = "/", method = "get", operation_id = "list_subscriptions")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: Data<&AppState>,
        _key: ApiKey,
        is_active: Query<Option<bool>>,
        channel_type: Query<Option<ChannelType>>,
        category: Query<Option<Category>>,
        symbol: Query<Option<String>>,
        requesting_service: Query<Option<String>>,
    ) -> ListResponse {
        let filter = q::ListFilter {
            is_active: is_active.0,
            channel_type: channel_type.0.map(|c| c.as_str().to_owned()),
            category: category.0.map(|c| c.as_str().to_owned()),
            symbol: symbol.0,
            requesting_service: requesting_service.0,
        };
        let result = async {
            let rows = q::list(&state.db, &filter).await?;
            let subs = rows.into_iter().map(Subscription::try_from);
            Ok::<_, ApiError>(subs.collect::<Result<Vec<_>, _>>()?)
        };
        match result.await {
            Ok(subs) => ListResponse::Ok(Json(subs)),
            Err(e) => ListResponse::from_api_error(e),
        }
    }

    /// One subscription.
    #[oai(path = "/:id", method = "get", operation_id = "get_subscription")]
    async fn get(&self, state: Data<&AppState>, _key: ApiKey, id: Path<Uuid>) -> OneResponse {
        let result = async {
            let row = q::find(&state.db, id.0).await?.ok_or(ApiError::NotFound)?;
            Ok::<_, ApiError>(Subscription::try_from(row)?)
        };
        match result.await {
            Ok(sub) => OneResponse::Ok(Json(sub)),
            Err(e) => OneResponse::from_api_error(e),
        }
    }

    /// Cancel a subscription.
    ///
    /// The upstream topic is unsubscribed only when no one else wants it; the service's queue
    /// binding is removed when none of its other active subscriptions uses the routing key (the
    /// queue stays). Cancelling a cancelled subscription returns it unchanged.
    #[oai(path = "/:id", method = "delete", operation_id = "cancel_subscription")]
    async fn cancel(&self, state: Data<&AppState>, _key: ApiKey, id: Path<Uuid>) -> OneResponse {
        let result = async {
            let row = q::find(&state.db, id.0).await?.ok_or(ApiError::NotFound)?;
            let cancelled = cancel_rows(&state, vec![row]).await?.into_iter().next();
            let row = cancelled.ok_or(ApiError::NotFound)?;
            Ok::<_, ApiError>(Subscription::try_from(row)?)
        };
        match result.await {
            Ok(sub) => OneResponse::Ok(Json(sub)),
            Err(e) => OneResponse::from_api_error(e),
        }
    }

    /// Cancel every active subscription of a service.
    #[oai(
        path = "/by-service/:service_name",
        method = "delete",
        operation_id = "cancel_service_subscriptions"
    )]
    async fn cancel_by_service(
        &self,
        state: Data<&AppState>,
        _key: ApiKey,
        service_name: Path<String>,
    ) -> ByServiceResponse {
        let filter = q::ListFilter {
            is_active: Some(true),
            requesting_service: Some(service_name.0),
            ..q::ListFilter::default()
        };
        let result = async {
            let rows = q::list(&state.db, &filter).await?;
            cancel_rows(&state, rows).await
        };
        match result.await {
            Ok(rows) => ByServiceResponse::Ok(Json(Cancelled {
                cancelled: rows.len() as u64,
            })),
            Err(e) => ByServiceResponse::from_api_error(e),
        }
    }
}

/// Validates, stores and acquires; `true` when the row is new.
async fn create(state: &AppState, req: CreateSubscription) -> Result<(Model, bool), ApiError> {
    let spec = TopicSpec::new(
        req.channel_type,
        req.category,
        req.symbol.as_deref(),
        req.depth,
        req.interval.as_deref(),
    )
    .map_err(|e| ApiError::Invalid(format!("field `{}`: {e}", e.field())))?;
    if spec.channel_type.is_private() && !state.private_available {
        return Err(ApiError::PrivateUnavailable(format!(
            "channel_type {} is a private stream and needs Bybit credentials; set \
             BYBIT_API_KEY and BYBIT_API_SECRET and restart the gateway",
            spec.channel_type
        )));
    }
    let service = req.requesting_service;
    if service == RESERVED_SERVICE {
        return Err(ApiError::Invalid(format!(
            "field `requesting_service`: {RESERVED_SERVICE:?} is reserved for the pipeline file's subscriptions"
        )));
    }
    let (row, created) = match q::find_active(&state.db, &spec, &service).await? {
        Some(row) => (row, false),
        None => match q::insert(&state.db, &spec, &service).await {
            Ok(row) => (row, true),
            // A concurrent identical request won the partial unique index.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let row = q::find_active(&state.db, &spec, &service).await?;
                (row.ok_or(ApiError::Database(e))?, false)
            }
            Err(e) => return Err(e.into()),
        },
    };
    let key = spec.key();
    state.registry.acquire(&key, &service);
    let version = state.bindings.bind(Binding {
        service: service.clone(),
        class: spec.class(),
        routing_key: spec.routing_key(),
    });
    if state.broker_configured {
        let _ = tokio::time::timeout(BIND_WAIT, state.bindings.wait_applied(version)).await;
    }
    // The topic may already be live for someone else: show its real status at once.
    let row = match state.registry.status(&key) {
        Some(status) if created && status.as_str() != row.status => {
            q::set_status(&state.db, &key, status.as_str(), status.message()).await?;
            q::find(&state.db, row.id).await?.unwrap_or(row)
        }
        _ => row,
    };
    if created {
        tracing::info!(id = %row.id, topic = %row.topic, service = %row.requesting_service, "Subscription created.");
    }
    Ok((row, created))
}

/// Cancels rows (already cancelled ones are returned unchanged), releases their topics and
/// removes bindings no other active subscription of the service still uses.
async fn cancel_rows(state: &AppState, rows: Vec<Model>) -> Result<Vec<Model>, ApiError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if !row.is_active {
            out.push(row);
            continue;
        }
        let row = q::cancel(&state.db, row).await?;
        tracing::info!(id = %row.id, topic = %row.topic, service = %row.requesting_service, "Subscription cancelled.");
        if let Some(spec) = q::spec_of(&row) {
            state.registry.release(&spec.key(), &row.requesting_service);
            let still_used = q::list(
                &state.db,
                &q::ListFilter {
                    is_active: Some(true),
                    requesting_service: Some(row.requesting_service.clone()),
                    ..q::ListFilter::default()
                },
            )
            .await?
            .iter()
            .filter_map(q::spec_of)
            .any(|s| s.routing_key() == spec.routing_key() && s.class() == spec.class());
            if !still_used {
                state.bindings.unbind(&Binding {
                    service: row.requesting_service.clone(),
                    class: spec.class(),
                    routing_key: spec.routing_key(),
                });
            }
        }
        out.push(row);
    }
    Ok(out)
}
