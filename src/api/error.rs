//! The one JSON error shape of the API, `{"error": "<code>", "message": "<text>"}`, and the
//! mapping of every failure to it: domain errors ([`ApiError`]), poem-openapi's own parse
//! errors (the `bad_request_handler` of each response enum) and anything else poem raises
//! (unknown route, wrong method; [`to_json_response`]).

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{Object, payload::Json};

/// The body of a 503 from a route that needs the database.
pub fn database_unavailable() -> Json<ErrorBody> {
    ErrorBody::new(
        "database_unavailable",
        "the database does not answer; market data keeps flowing, retry later",
    )
}

/// A failure to reach the database at all (pool timeout, refused or broken connection), as
/// opposed to a statement the database refused.
fn is_unreachable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            **e,
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::Tls(_)
                | sea_orm::sqlx::Error::Protocol(_)
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
        _ => false,
    }
}

/// Routes under `/api/v1/` need the database: while the health board says it is down they
/// answer 503 at once (no 5 s wait on the pool); everything else passes.
pub async fn database_guard<E: poem::Endpoint>(
    next: std::sync::Arc<E>,
    req: poem::Request,
) -> poem::Result<Response> {
    if req.uri().path().starts_with("/api/")
        && req
            .data::<crate::state::AppState>()
            .is_some_and(|s| s.health.snapshot().database == crate::health::ComponentState::Down)
    {
        let mut resp = database_unavailable().into_response();
        resp.set_status(StatusCode::SERVICE_UNAVAILABLE);
        return Ok(resp);
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Every error body.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Machine-readable code: `invalid_request`, `private_channel_unavailable`, `unauthorized`,
    /// `not_found`, `method_not_allowed`, `database_unavailable`, `internal`.
    pub error: String,
    /// Human-readable explanation (names the field at fault for `invalid_request`).
    pub message: String,
}

impl ErrorBody {
    /// A body with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Json<Self> {
        Json(Self {
            error: code.to_owned(),
            message: message.into(),
        })
    }
}

/// What a handler can fail with besides its own successes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    PrivateUnavailable(String),
    #[error("not found")]
    NotFound,
    #[error("database error")]
    Database(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Stored(#[from] super::types::UnknownStoredValue),
}

/// Implemented by every response enum, so errors map to it in one place.
pub trait ErrorResponse: Sized {
    /// 400 with a body.
    fn bad_request(body: Json<ErrorBody>) -> Self;
    /// 401 with a body.
    fn unauthorized(body: Json<ErrorBody>) -> Self;
    /// 500 with a body.
    fn internal(body: Json<ErrorBody>) -> Self;
    /// 503 with a body: the database does not answer (routes that need it).
    fn unavailable(body: Json<ErrorBody>) -> Self;
    /// 404 with a body, for operations that have one (others answer 500: a bug).
    fn not_found(body: Json<ErrorBody>) -> Self {
        Self::internal(body)
    }

    /// Maps a domain error; 500s leak no internals (the cause is logged here, once).
    fn from_api_error(err: ApiError) -> Self {
        match err {
            ApiError::Invalid(m) => Self::bad_request(ErrorBody::new("invalid_request", m)),
            ApiError::PrivateUnavailable(m) => {
                Self::bad_request(ErrorBody::new("private_channel_unavailable", m))
            }
            ApiError::NotFound => Self::not_found(ErrorBody::new("not_found", "no such resource")),
            ApiError::Database(error) if is_unreachable(&error) => {
                tracing::warn!(%error, "Database unreachable for an API call.");
                Self::unavailable(database_unavailable())
            }
            ApiError::Database(error) => {
                tracing::error!(%error, "Database request of an API call failed.");
                Self::internal(ErrorBody::new("internal", "the database request failed"))
            }
            ApiError::Stored(error) => {
                tracing::error!(%error, "A stored row cannot be shown.");
                Self::internal(ErrorBody::new("internal", error.to_string()))
            }
        }
    }

    /// The `bad_request_handler`: poem-openapi could not parse the request (bad JSON, unknown
    /// enum value, failed validator, bad query parameter).
    fn from_poem_error(err: poem::Error) -> Self {
        if err.status() == StatusCode::UNAUTHORIZED {
            return Self::unauthorized(ErrorBody::new(
                "unauthorized",
                "missing or wrong X-API-Key",
            ));
        }
        // poem-openapi names path parameters by position internally; our only fallible one is `id`.
        let message = err
            .to_string()
            .replace("path `param0`", "path parameter `id`");
        Self::bad_request(ErrorBody::new("invalid_request", message))
    }
}

/// Implements [`ErrorResponse`] for a response enum with `BadRequest`, `Unauthorized` and
/// `Internal` variants (and optionally `NotFound`), plus its `bad_request_handler` fn.
macro_rules! error_response {
    ($ty:ident, $handler:ident $(, $nf:ident)?) => {
        impl $crate::api::error::ErrorResponse for $ty {
            fn bad_request(b: poem_openapi::payload::Json<$crate::api::error::ErrorBody>) -> Self {
                Self::BadRequest(b)
            }
            fn unauthorized(b: poem_openapi::payload::Json<$crate::api::error::ErrorBody>) -> Self {
                Self::Unauthorized(b)
            }
            fn internal(b: poem_openapi::payload::Json<$crate::api::error::ErrorBody>) -> Self {
                Self::Internal(b)
            }
            fn unavailable(b: poem_openapi::payload::Json<$crate::api::error::ErrorBody>) -> Self {
                Self::Unavailable(b)
            }
            $(fn not_found(b: poem_openapi::payload::Json<$crate::api::error::ErrorBody>) -> Self {
                Self::$nf(b)
            })?
        }
        fn $handler(err: poem::Error) -> $ty {
            <$ty as $crate::api::error::ErrorResponse>::from_poem_error(err)
        }
    };
}
pub(crate) use error_response;

/// The code of a status outside the operations (poem's own errors).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "database_unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// Any error poem raised outside an operation's own responses, as the JSON error body.
pub fn to_json_response(err: poem::Error) -> Response {
    let status = err.status();
    let message = if status.is_server_error() {
        tracing::error!(error = %err, "Unhandled HTTP error.");
        "internal error".to_owned()
    } else {
        err.to_string()
    };
    let mut resp = ErrorBody::new(code_of(status), message).into_response();
    resp.set_status(status);
    resp
}
