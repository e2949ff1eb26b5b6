//! The one error type of the HTTP edge. Each variant is one status and one `code` of API.md;
//! the body is always `{"error": {"code", "message", …}}`. A 5xx body never carries internal text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kassa_app::AppError;
use serde_json::{Value, json};

#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request`: malformed JSON, unknown field, out-of-range value.
    InvalidRequest {
        param: Option<String>,
        message: String,
    },
    /// 401 `unauthorized`: missing or wrong credentials.
    Unauthorized,
    /// 403 `forbidden`: a valid key that may not do this.
    Forbidden,
    /// 404 `not_found`.
    NotFound(String),
    /// 409 `insufficient_stock`, with the SKUs that ran short.
    InsufficientStock(Vec<String>),
    /// 409 `price_changed`, with the current total.
    PriceChanged(i64),
    /// 409 `cart_already_checked_out`, with the order the cart became.
    CartAlreadyCheckedOut(String),
    /// 409 `invalid_state`.
    InvalidState(String),
    /// 429 `rate_limited`, with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 503 `service_unavailable` (database unreachable), with `Retry-After`.
    Unavailable,
    /// 500 `internal_error`: a bug; details go to the log only.
    Internal,
}

impl ApiError {
    pub fn invalid(param: Option<String>, message: impl Into<String>) -> ApiError {
        ApiError::InvalidRequest {
            param,
            message: message.into(),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> ApiError {
        match error {
            AppError::InvalidRequest { param, message } => {
                ApiError::InvalidRequest { param, message }
            }
            AppError::NotFound { what } => ApiError::NotFound(format!("{what} not found")),
            AppError::InsufficientStock { skus } => ApiError::InsufficientStock(skus),
            AppError::PriceChanged { total } => ApiError::PriceChanged(total),
            AppError::CartAlreadyCheckedOut { order_id } => {
                ApiError::CartAlreadyCheckedOut(order_id)
            }
            AppError::InvalidState { message } => ApiError::InvalidState(message),
            AppError::Store(error) => {
                tracing::error!(%error, "storage failure");
                ApiError::Unavailable
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, extra): (StatusCode, &str, String, Value) = match self {
            ApiError::InvalidRequest { param, message } => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                message,
                json!({ "param": param }),
            ),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid credentials".into(),
                json!({}),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this key may not do this".into(),
                json!({}),
            ),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message, json!({})),
            ApiError::InsufficientStock(skus) => (
                StatusCode::CONFLICT,
                "insufficient_stock",
                "not enough stock for some items".into(),
                json!({ "skus": skus }),
            ),
            ApiError::PriceChanged(total) => (
                StatusCode::CONFLICT,
                "price_changed",
                "the total changed since it was shown".into(),
                json!({ "total": total }),
            ),
            ApiError::CartAlreadyCheckedOut(order_id) => (
                StatusCode::CONFLICT,
                "cart_already_checked_out",
                "this cart has already been checked out".into(),
                json!({ "order_id": order_id }),
            ),
            ApiError::InvalidState(message) => {
                (StatusCode::CONFLICT, "invalid_state", message, json!({}))
            }
            ApiError::RateLimited { retry_after_secs } => {
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests; retry later".into(),
                    json!({}),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return response;
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "request bodies are limited to {} bytes",
                    kassa_domain::limits::REQUEST_BODY_MAX_BYTES
                ),
                json!({}),
            ),
            ApiError::Unavailable => {
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "temporarily unavailable; retry later".into(),
                    json!({}),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
                return response;
            }
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error".into(),
                json!({}),
            ),
        };
        error_response(status, code, message, extra)
    }
}

fn error_response(status: StatusCode, code: &str, message: String, extra: Value) -> Response {
    let mut body = json!({ "code": code, "message": message });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
    }
    (status, axum::Json(json!({ "error": body }))).into_response()
}
