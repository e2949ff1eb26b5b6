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
    /// 400 `idempotency_key_required`.
    IdempotencyKeyRequired,
    /// 422 `idempotency_key_reused`: same key, different request.
    IdempotencyKeyReused,
    /// 405 `method_not_allowed` (with the `Allow` header axum sets).
    MethodNotAllowed,
    /// 408 `request_timeout`: the body did not arrive within the body-read time limit.
    RequestTimeout,
    /// 409 `request_in_progress`, with `Retry-After`.
    RequestInProgress { retry_after_secs: u64 },
    /// 409 `insufficient_stock`, with the SKUs that ran short.
    InsufficientStock(Vec<String>),
    /// 409 `price_changed`, with the current total.
    PriceChanged(i64),
    /// 409 `cart_already_checked_out`, with the order the cart became.
    CartAlreadyCheckedOut(String),
    /// 409 `invalid_state`.
    InvalidState(String),
    /// 422 `amount_exceeds_refundable`, with how much is `refundable`.
    AmountExceedsRefundable(i64),
    /// 402 `provider_refused`: the provider definitely refused; nothing was charged.
    ProviderRefused(String),
    /// 429 `rate_limited`, with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 503 `provider_unavailable`, with `Retry-After`: retry with the same Idempotency-Key.
    ProviderUnavailable { retry_after_secs: u64 },
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

    /// Status, `Retry-After` seconds if any, and the JSON body.
    pub fn parts(&self) -> (StatusCode, Option<u64>, Value) {
        use StatusCode as S;
        let (status, retry, code, message, extra) = match self {
            ApiError::InvalidRequest { param, message } => (
                S::BAD_REQUEST,
                None,
                "invalid_request",
                message.clone(),
                json!({ "param": param }),
            ),
            ApiError::Unauthorized => (
                S::UNAUTHORIZED,
                None,
                "unauthorized",
                "missing or invalid credentials".into(),
                json!({}),
            ),
            ApiError::Forbidden => (
                S::FORBIDDEN,
                None,
                "forbidden",
                "this key may not do this".into(),
                json!({}),
            ),
            ApiError::NotFound(message) => {
                (S::NOT_FOUND, None, "not_found", message.clone(), json!({}))
            }
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                None,
                "method_not_allowed",
                "this endpoint does not answer this method".into(),
                json!({}),
            ),
            ApiError::RequestTimeout => (
                S::REQUEST_TIMEOUT,
                None,
                "request_timeout",
                "the request body did not arrive in time".into(),
                json!({}),
            ),
            ApiError::IdempotencyKeyRequired => (
                S::BAD_REQUEST,
                None,
                "idempotency_key_required",
                "this request needs an Idempotency-Key header".into(),
                json!({}),
            ),
            ApiError::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                None,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request".into(),
                json!({}),
            ),
            ApiError::RequestInProgress { retry_after_secs } => (
                S::CONFLICT,
                Some(*retry_after_secs),
                "request_in_progress",
                "a request with this Idempotency-Key is still running".into(),
                json!({}),
            ),
            ApiError::InsufficientStock(skus) => (
                S::CONFLICT,
                None,
                "insufficient_stock",
                "not enough stock for some items".into(),
                json!({ "skus": skus }),
            ),
            ApiError::PriceChanged(total) => (
                S::CONFLICT,
                None,
                "price_changed",
                "the total changed since it was shown".into(),
                json!({ "total": total }),
            ),
            ApiError::CartAlreadyCheckedOut(order_id) => (
                S::CONFLICT,
                None,
                "cart_already_checked_out",
                "this cart has already been checked out".into(),
                json!({ "order_id": order_id }),
            ),
            ApiError::InvalidState(message) => (
                S::CONFLICT,
                None,
                "invalid_state",
                message.clone(),
                json!({}),
            ),
            ApiError::AmountExceedsRefundable(refundable) => (
                S::UNPROCESSABLE_ENTITY,
                None,
                "amount_exceeds_refundable",
                "the amount exceeds what is still refundable".into(),
                json!({ "refundable": refundable }),
            ),
            ApiError::ProviderRefused(message) => (
                S::PAYMENT_REQUIRED,
                None,
                "provider_refused",
                format!("the payment provider refused: {message}"),
                json!({}),
            ),
            ApiError::RateLimited { retry_after_secs } => (
                S::TOO_MANY_REQUESTS,
                Some(*retry_after_secs),
                "rate_limited",
                "too many requests; retry later".into(),
                json!({}),
            ),
            ApiError::PayloadTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                None,
                "payload_too_large",
                format!(
                    "request bodies are limited to {} bytes",
                    kassa_domain::limits::REQUEST_BODY_MAX_BYTES
                ),
                json!({}),
            ),
            ApiError::ProviderUnavailable { retry_after_secs } => (
                S::SERVICE_UNAVAILABLE,
                Some(*retry_after_secs),
                "provider_unavailable",
                "the payment provider did not answer; retry with the same Idempotency-Key".into(),
                json!({}),
            ),
            ApiError::Unavailable => (
                S::SERVICE_UNAVAILABLE,
                Some(1),
                "service_unavailable",
                "temporarily unavailable; retry later".into(),
                json!({}),
            ),
            ApiError::Internal => (
                S::INTERNAL_SERVER_ERROR,
                None,
                "internal_error",
                "internal error".into(),
                json!({}),
            ),
        };
        let mut body = json!({ "code": code, "message": message });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
        }
        (status, retry, json!({ "error": body }))
    }
}

fn seconds(value: i64) -> u64 {
    u64::try_from(value.max(1)).unwrap_or(1)
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> ApiError {
        match error {
            AppError::InvalidRequest { param, message } => {
                ApiError::InvalidRequest { param, message }
            }
            AppError::NotFound { what } => ApiError::NotFound(format!("{what} not found")),
            AppError::Unauthorized => ApiError::Unauthorized,
            AppError::InsufficientStock { skus } => ApiError::InsufficientStock(skus),
            AppError::PriceChanged { total } => ApiError::PriceChanged(total),
            AppError::CartAlreadyCheckedOut { order_id } => {
                ApiError::CartAlreadyCheckedOut(order_id)
            }
            AppError::InvalidState { message } => ApiError::InvalidState(message),
            AppError::IdempotencyKeyRequired => ApiError::IdempotencyKeyRequired,
            AppError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            AppError::RequestInProgress { retry_after_secs } => ApiError::RequestInProgress {
                retry_after_secs: seconds(retry_after_secs),
            },
            AppError::ProviderUnavailable { retry_after_secs } => ApiError::ProviderUnavailable {
                retry_after_secs: seconds(retry_after_secs),
            },
            AppError::ProviderRefused { message } => ApiError::ProviderRefused(message),
            AppError::AmountExceedsRefundable { refundable_minor } => {
                ApiError::AmountExceedsRefundable(refundable_minor)
            }
            AppError::Store(error) => {
                tracing::error!(%error, "storage failure");
                ApiError::Unavailable
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Refused before its body was read: the rest of the body is still on the connection,
        // so it cannot carry another request. Say so, or a client reuses it and fails.
        let body_left_unread = matches!(self, ApiError::PayloadTooLarge | ApiError::RequestTimeout);
        let (status, retry_after, body) = self.parts();
        let mut response = (status, axum::Json(body)).into_response();
        if body_left_unread {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
