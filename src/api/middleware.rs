//! Request middleware: the API key on `/api/*` and per-request observability.

use std::{sync::Arc, time::Instant};

use poem::{
    Endpoint, IntoResponse, PathPattern, Request, Response,
    http::{HeaderValue, Method},
};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ErrorBody;
use crate::{state::AppState, telemetry};

/// Response header carrying the request's trace id (32 lowercase hex).
pub const TRACE_HEADER: &str = "x-trace-id";

/// Whether `given` equals `expected`, in time independent of where they differ (both are
/// hashed first, so the length does not leak either).
fn key_matches(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Whether the percent-decoded path or any query key or value holds a NUL byte (input the
/// database cannot store: answered 400, never passed on).
fn has_nul(uri: &poem::http::Uri) -> bool {
    let path_nul = uri.path().contains("%00");
    let query_nul = uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k.contains('\0') || v.contains('\0'))
    });
    path_nul || query_nul
}

/// Rejects `/api/*` requests without the right `X-API-Key` with 401 and the JSON error body,
/// before any handler runs (so a rejected request has no other effect).
pub async fn require_key<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    if req.uri().path().starts_with("/api/") {
        let expected = req
            .data::<AppState>()
            .map(|s| s.api_key.expose_secret().as_bytes().to_vec())
            .unwrap_or_default();
        let ok = req
            .headers()
            .get("x-api-key")
            .is_some_and(|v| !expected.is_empty() && key_matches(v.as_bytes(), &expected));
        if !ok {
            let mut resp =
                ErrorBody::new("unauthorized", "missing or wrong X-API-Key header").into_response();
            resp.set_status(poem::http::StatusCode::UNAUTHORIZED);
            return Ok(resp);
        }
        if has_nul(req.uri()) {
            let mut resp = ErrorBody::new(
                "invalid_request",
                "the path or query contains a NUL byte, which cannot be stored",
            )
            .into_response();
            resp.set_status(poem::http::StatusCode::BAD_REQUEST);
            return Ok(resp);
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Answers 413 with the JSON error when the body is larger than `http.max_body_bytes` (by its
/// `Content-Length`, or while reading a body sent without one), before any handler runs.
pub async fn limit_body<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let max = req
        .data::<AppState>()
        .map_or(usize::MAX, |s| s.http.max_body_bytes);
    let too_large = || {
        let mut resp = ErrorBody::new(
            "payload_too_large",
            format!("the request body is larger than {max} bytes"),
        )
        .into_response();
        resp.set_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE);
        resp
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => return Ok(too_large()),
        Some(_) => {}
        None if req.method() == Method::GET || req.method() == Method::HEAD => {}
        None => {
            // No length given (chunked): read at most `max` bytes.
            match req.take_body().into_bytes_limit(max).await {
                Ok(bytes) => req.set_body(bytes),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
                Err(e) => return Err(e.into()),
            }
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Gives each request a trace id (returned in [`TRACE_HEADER`]), logs it once (method, path,
/// status, latency, trace id) and counts it by matched route template.
pub async fn observe<E: Endpoint>(next: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let start = Instant::now();
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let method = method_label(req.method());
    let path = req.uri().path().to_owned();
    req.set_data(TraceId(trace_id.clone()));
    let result = next.call(req).await;
    let mut resp = match result {
        Ok(r) => r.into_response(),
        Err(e) => super::error::to_json_response(e),
    };
    let latency = start.elapsed();
    let status = resp.status().as_u16();
    let route = resp
        .data::<PathPattern>()
        .map(|p| p.0.to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "other".to_owned());
    metrics::counter!(
        telemetry::HTTP_REQUESTS,
        "method" => method,
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        telemetry::HTTP_LATENCY,
        "method" => method,
        "route" => route.clone()
    )
    .record(latency.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        resp.headers_mut().insert(TRACE_HEADER, v);
    }
    tracing::info!(
        method,
        path = %path,
        route = %route,
        status,
        latency_ms = latency.as_secs_f64() * 1e3,
        trace_id = %trace_id,
        "HTTP request."
    );
    Ok(resp)
}

/// The `method` label: one of the standard methods, else `other` (a client choosing the method
/// must not be able to add series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The trace id of the current request (request data).
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

#[cfg(test)]
mod tests {
    use super::key_matches;

    #[test]
    fn api_key_must_match_exactly() {
        assert!(key_matches(b"secret-key", b"secret-key"));
        assert!(!key_matches(b"secret-kex", b"secret-key"));
        assert!(!key_matches(b"secret", b"secret-key"));
        assert!(!key_matches(b"", b"secret-key"));
    }
}
