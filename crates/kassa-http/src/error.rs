//! The one error type of the HTTP edge. Each variant is one status and one `code` of API.md;
//! the body is always `{"error": {"code", "message", …}}`. A 5xx body never carries internal text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kassa_app::AppError;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

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
    /// 409 `insufficient_credits`, with the `balance`.
    InsufficientCredits(i64),
    /// 409 `seller_unavailable`, with the `seller_id` that cannot take charges.
    SellerUnavailable(String),
    /// 422 `amount_too_small`: the total is below Stripe's minimum charge; nothing reserved.
    AmountTooSmall(String),
    /// 402 `provider_refused`: the provider definitely refused; nothing was charged.
    ProviderRefused(String),
    /// 429 `rate_limited`, with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// 413 `payload_too_large`: the route's body limit in bytes.
    PayloadTooLarge { limit_bytes: usize },
    /// 503 `provider_unavailable`, with `Retry-After`: retry with the same Idempotency-Key.
    ProviderUnavailable { retry_after_secs: u64 },
    /// 503 `service_unavailable` (database unreachable), with `Retry-After`.
    Unavailable,
    /// 500 `internal_error`: a bug; details go to the log only.
    Internal,
}

impl ApiError {
    /// 413 for the API's usual body limit.
    pub fn payload_too_large() -> ApiError {
        ApiError::PayloadTooLarge {
            limit_bytes: kassa_domain::limits::REQUEST_BODY_MAX_BYTES,
        }
    }

    pub fn invalid(param: Option<String>, message: impl Into<String>) -> ApiError {
        ApiError::InvalidRequest {
            param,
            message: message.into(),
        }
    }

    /// Status, `Retry-After` seconds if any, and the JSON body.
    pub fn parts(&self) -> (StatusCode, Option<u64>, Value) {
        use StatusCode as S;
        let detail = |code, message: String| ErrorDetail {
            code,
            message,
            param: None,
            skus: None,
            total: None,
            order_id: None,
            refundable: None,
            balance: None,
            seller_id: None,
        };
        let fixed = |code, message: &str| detail(code, message.to_owned());
        let (status, retry, detail) = match self {
            ApiError::InvalidRequest { param, message } => (
                S::BAD_REQUEST,
                None,
                ErrorDetail {
                    param: param.clone(),
                    ..detail(ErrorCode::InvalidRequest, message.clone())
                },
            ),
            ApiError::Unauthorized => (
                S::UNAUTHORIZED,
                None,
                fixed(ErrorCode::Unauthorized, "missing or invalid credentials"),
            ),
            ApiError::Forbidden => (
                S::FORBIDDEN,
                None,
                fixed(ErrorCode::Forbidden, "this key may not do this"),
            ),
            ApiError::NotFound(message) => (
                S::NOT_FOUND,
                None,
                detail(ErrorCode::NotFound, message.clone()),
            ),
            ApiError::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                None,
                fixed(
                    ErrorCode::MethodNotAllowed,
                    "this endpoint does not answer this method",
                ),
            ),
            ApiError::RequestTimeout => (
                S::REQUEST_TIMEOUT,
                None,
                fixed(
                    ErrorCode::RequestTimeout,
                    "the request body did not arrive in time",
                ),
            ),
            ApiError::IdempotencyKeyRequired => (
                S::BAD_REQUEST,
                None,
                fixed(
                    ErrorCode::IdempotencyKeyRequired,
                    "this request needs an Idempotency-Key header",
                ),
            ),
            ApiError::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                None,
                fixed(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was used for a different request",
                ),
            ),
            ApiError::RequestInProgress { retry_after_secs } => (
                S::CONFLICT,
                Some(*retry_after_secs),
                fixed(
                    ErrorCode::RequestInProgress,
                    "a request with this Idempotency-Key is still running",
                ),
            ),
            ApiError::InsufficientStock(skus) => (
                S::CONFLICT,
                None,
                ErrorDetail {
                    skus: Some(skus.clone()),
                    ..fixed(
                        ErrorCode::InsufficientStock,
                        "not enough stock for some items",
                    )
                },
            ),
            ApiError::PriceChanged(total) => (
                S::CONFLICT,
                None,
                ErrorDetail {
                    total: Some(*total),
                    ..fixed(
                        ErrorCode::PriceChanged,
                        "the total changed since it was shown",
                    )
                },
            ),
            ApiError::CartAlreadyCheckedOut(order_id) => (
                S::CONFLICT,
                None,
                ErrorDetail {
                    order_id: Some(order_id.clone()),
                    ..fixed(
                        ErrorCode::CartAlreadyCheckedOut,
                        "this cart has already been checked out",
                    )
                },
            ),
            ApiError::InvalidState(message) => (
                S::CONFLICT,
                None,
                detail(ErrorCode::InvalidState, message.clone()),
            ),
            ApiError::AmountExceedsRefundable(refundable) => (
                S::UNPROCESSABLE_ENTITY,
                None,
                ErrorDetail {
                    refundable: Some(*refundable),
                    ..fixed(
                        ErrorCode::AmountExceedsRefundable,
                        "the amount exceeds what is still refundable",
                    )
                },
            ),
            ApiError::InsufficientCredits(balance) => (
                S::CONFLICT,
                None,
                ErrorDetail {
                    balance: Some(*balance),
                    ..fixed(
                        ErrorCode::InsufficientCredits,
                        "the balance is smaller than the debit; nothing was spent",
                    )
                },
            ),
            ApiError::SellerUnavailable(seller_id) => (
                S::CONFLICT,
                None,
                ErrorDetail {
                    seller_id: Some(seller_id.clone()),
                    ..fixed(
                        ErrorCode::SellerUnavailable,
                        "a seller of this cart cannot take payments now; nothing was reserved",
                    )
                },
            ),
            ApiError::AmountTooSmall(message) => (
                S::UNPROCESSABLE_ENTITY,
                None,
                detail(ErrorCode::AmountTooSmall, message.clone()),
            ),
            ApiError::ProviderRefused(message) => (
                S::PAYMENT_REQUIRED,
                None,
                detail(
                    ErrorCode::ProviderRefused,
                    format!("the payment provider refused: {message}"),
                ),
            ),
            ApiError::RateLimited { retry_after_secs } => (
                S::TOO_MANY_REQUESTS,
                Some(*retry_after_secs),
                fixed(ErrorCode::RateLimited, "too many requests; retry later"),
            ),
            ApiError::PayloadTooLarge { limit_bytes } => (
                S::PAYLOAD_TOO_LARGE,
                None,
                detail(
                    ErrorCode::PayloadTooLarge,
                    format!("request bodies are limited to {limit_bytes} bytes here"),
                ),
            ),
            ApiError::ProviderUnavailable { retry_after_secs } => (
                S::SERVICE_UNAVAILABLE,
                Some(*retry_after_secs),
                fixed(
                    ErrorCode::ProviderUnavailable,
                    "the payment provider did not answer; retry with the same Idempotency-Key",
                ),
            ),
            ApiError::Unavailable => (
                S::SERVICE_UNAVAILABLE,
                Some(1),
                fixed(
                    ErrorCode::ServiceUnavailable,
                    "temporarily unavailable; retry later",
                ),
            ),
            ApiError::Internal => (
                S::INTERNAL_SERVER_ERROR,
                None,
                fixed(ErrorCode::InternalError, "internal error"),
            ),
        };
        let body = serde_json::to_value(ErrorBody { error: detail }).unwrap_or(Value::Null);
        (status, retry, body)
    }
}

/// Every error answer: `{"error": {"code", "message", …}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// `invalid_request`: the field at fault, as a JSON path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// `insufficient_stock`: the SKUs that ran short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skus: Option<Vec<String>>,
    /// `price_changed`: the cart's current total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// `cart_already_checked_out`: the order the cart became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// `amount_exceeds_refundable`: what is still refundable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refundable: Option<i64>,
    /// `insufficient_credits`: the customer's balance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    /// `seller_unavailable`: the seller who cannot take charges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
}

/// The error codes of API.md.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    RequestInProgress,
    InsufficientStock,
    PriceChanged,
    CartAlreadyCheckedOut,
    InvalidState,
    AmountExceedsRefundable,
    ProviderRefused,
    RateLimited,
    PayloadTooLarge,
    ProviderUnavailable,
    ServiceUnavailable,
    InternalError,
    InsufficientCredits,
    SellerUnavailable,
    AmountTooSmall,
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
            AppError::RateLimited { retry_after_secs } => ApiError::RateLimited {
                retry_after_secs: seconds(retry_after_secs),
            },
            AppError::ProviderRefused { message } => ApiError::ProviderRefused(message),
            AppError::InsufficientCredits { balance } => ApiError::InsufficientCredits(balance),
            AppError::SellerUnavailable { seller_id } => ApiError::SellerUnavailable(seller_id),
            error @ AppError::AmountTooSmall { .. } => {
                ApiError::AmountTooSmall(format!("{error}; nothing was reserved"))
            }
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
        let body_left_unread = matches!(
            self,
            ApiError::PayloadTooLarge { .. } | ApiError::RequestTimeout
        );
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
