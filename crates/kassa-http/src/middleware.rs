//! Layers every answer passes through: a request id on every request and response, the API's
//! JSON error shape on every error whatever produced it (axum's own 405 and rejections, a
//! panicking handler), so no client ever has to parse a plain-text or empty error.

use std::any::Any;

use axum::extract::Request;
use axum::http::header::{
    ALLOW, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, RETRY_AFTER,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::request_id;
use crate::error::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Takes the caller's `X-Request-Id` (short and printable) or makes one, puts it on the request
/// for the handlers and the audit trail, and on the response.
pub async fn with_request_id(mut request: Request, next: Next) -> Response {
    let id = request_id(request.headers());
    let Ok(value) = HeaderValue::from_str(&id) else {
        return next.run(request).await;
    };
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, value.clone());
    // Everything logged while handling the request carries its id. The path is logged, never
    // the query or the body: those can carry what S8 keeps out of logs.
    let client = crate::client_addr::client_of(request.extensions())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        client_ip = %client,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
}

/// Every answer says `Referrer-Policy: no-referrer` and, unless it is a page with a policy of
/// its own, a Content-Security-Policy that allows nothing (risk S4): a JSON answer opened in a
/// browser runs nothing and leaks no URL onwards.
pub async fn no_referrer_no_framing(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    headers
        .entry(CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    response
}

/// Rewrites any error answer that is not already JSON into the API's error shape, keeping its
/// status and its `Allow` and `Retry-After` headers.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_error || is_json {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("no such endpoint".into()),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ApiError::RequestTimeout,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
        status if status.is_server_error() => ApiError::Internal,
        status => ApiError::invalid(
            None,
            status
                .canonical_reason()
                .unwrap_or("the request is not valid"),
        ),
    };
    let mut shaped = error.into_response();
    *shaped.status_mut() = status;
    for name in [ALLOW, RETRY_AFTER] {
        if let Some(value) = response.headers().get(&name) {
            shaped.headers_mut().insert(name, value.clone());
        }
    }
    shaped
}

/// A handler that panicked answers 500 `internal_error`; the panic goes to the log only.
pub fn panic_answer(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(%detail, "a request handler panicked");
    ApiError::Internal.into_response()
}
