//! `/api/v1/subscriptions`: create, list, get, cancel, cancel by service. The handlers validate
//! and answer; the work is [`crate::subscriptions::Subscriptions`]'s.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use super::{
    ApiKey, ApiTags,
    error::{ApiError, ErrorBody, ErrorResponse, error_response},
    types::{Cancelled, CreateSubscription, Subscription},
};
use crate::{
    event::Category,
    state::AppState,
    store::{entity::subscriptions::Model, subscriptions as q},
    subscriptions::{ChannelType, CreateError, TopicSpec},
};

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
    /// The requesting service already holds `http.max_subscriptions_per_service` active
    /// subscriptions (`limit_exceeded`). Nothing changed.
    #[oai(status = 429)]
    TooMany(Json<ErrorBody>),
    /// The database failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The database does not answer (`database_unavailable`); retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
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
    /// The database does not answer (`database_unavailable`); retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
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
    /// The database does not answer (`database_unavailable`); retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
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
    /// The database does not answer (`database_unavailable`); retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
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
            let Some((row, created)) = create(&state, body.0).await? else {
                return Ok(None);
            };
            Ok::<_, ApiError>(Some((Subscription::try_from(row)?, created)))
        };
        match result.await {
            Ok(Some((sub, true))) => CreateResponse::Created(Json(sub)),
            Ok(Some((sub, false))) => CreateResponse::Existing(Json(sub)),
            Ok(None) => CreateResponse::TooMany(ErrorBody::new(
                "limit_exceeded",
                format!(
                    "the requesting_service already holds {} active subscriptions \
                     (http.max_subscriptions_per_service)",
                    state.http.max_subscriptions_per_service
                ),
            )),
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
            let rows = state.subscriptions.list(&filter).await?;
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
            let row = state.subscriptions.get(id.0).await?;
            Ok::<_, ApiError>(Subscription::try_from(row.ok_or(ApiError::NotFound)?)?)
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
            let row = state.subscriptions.cancel(id.0).await?;
            Ok::<_, ApiError>(Subscription::try_from(row.ok_or(ApiError::NotFound)?)?)
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
        match state.subscriptions.cancel_service(service_name.0).await {
            Ok(rows) => ByServiceResponse::Ok(Json(Cancelled {
                cancelled: rows.len() as u64,
            })),
            Err(e) => ByServiceResponse::from_api_error(e.into()),
        }
    }
}

/// Validates the request and hands it to the service; `true` when the row is new. `None` when
/// the service is at its limit of active subscriptions and this one would be new.
async fn create(
    state: &AppState,
    req: CreateSubscription,
) -> Result<Option<(Model, bool)>, ApiError> {
    let spec = TopicSpec::new(
        req.channel_type,
        req.category,
        req.symbol.as_deref(),
        req.depth,
        req.interval.as_deref(),
    )
    .map_err(|e| ApiError::Invalid(format!("field `{}`: {e}", e.field())))?;
    let service = req.requesting_service;
    if service.contains('\0') {
        return Err(ApiError::Invalid(
            "field `requesting_service`: must not contain a NUL byte".to_owned(),
        ));
    }
    let max = state.http.max_subscriptions_per_service;
    if q::count_active_of(&state.db, &service).await? as usize >= max
        && q::find_active(&state.db, spec.category, &spec.topic(), &service)
            .await?
            .is_none()
    {
        return Ok(None);
    }
    state
        .subscriptions
        .create(&spec, &service)
        .await
        .map_err(|e| match e {
            CreateError::PrivateUnavailable(_) => ApiError::PrivateUnavailable(e.to_string()),
            CreateError::ReservedService => ApiError::Invalid(e.to_string()),
            CreateError::Database(e) => ApiError::Database(e),
        })
        .map(Some)
}
