//! The outcomes a use case can refuse with. The HTTP edge maps each to one status and code of
//! API.md; nothing here knows about status codes.

use crate::ports::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// Input out of range or malformed; `param` names the field.
    #[error("{message}")]
    InvalidRequest {
        param: Option<String>,
        message: String,
    },
    /// A credential that does not grant this (an order token for another order, forged or
    /// expired).
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("not enough stock")]
    InsufficientStock { skus: Vec<String> },
    /// The client's `expected_total` differs from the server's price.
    #[error("the price changed")]
    PriceChanged { total: i64 },
    #[error("this cart has already been checked out")]
    CartAlreadyCheckedOut { order_id: String },
    /// The order or payment is not in a state that allows this.
    #[error("{message}")]
    InvalidState { message: String },
    /// More than is still refundable; `refundable_minor` says how much is.
    #[error("the amount exceeds what is refundable")]
    AmountExceedsRefundable { refundable_minor: i64 },
    /// A mutating request that must carry an `Idempotency-Key` did not.
    #[error("this request needs an Idempotency-Key header")]
    IdempotencyKeyRequired,
    /// The key was already used for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// A request with this key is still running.
    #[error("a request with this Idempotency-Key is in progress")]
    RequestInProgress { retry_after_secs: i64 },
    /// Too many checkouts by this customer or from this address lately (risk S7).
    #[error("too many checkouts; retry later")]
    RateLimited { retry_after_secs: i64 },
    /// The provider's answer is unknown (timeout, outage); retrying with the same key is safe.
    #[error("the payment provider is unavailable; retry with the same Idempotency-Key")]
    ProviderUnavailable { retry_after_secs: i64 },
    /// The provider definitely refused; nothing was charged and the order was canceled.
    #[error("the payment provider refused the payment: {message}")]
    ProviderRefused { message: String },
    /// The order's total is below the smallest amount Stripe charges in its currency; nothing
    /// was reserved.
    #[error("the total {total} is below {minimum}, the smallest amount Stripe charges")]
    AmountTooSmall {
        total: kassa_domain::money::Money,
        minimum: kassa_domain::money::Money,
    },
    /// A product's seller cannot take charges (risk P10); nothing was reserved.
    #[error("the seller cannot take payments")]
    SellerUnavailable { seller_id: String },
    /// A debit larger than the customer's balance; nothing was spent.
    #[error("not enough credits")]
    InsufficientCredits { balance: i64 },
    #[error("storage failure")]
    Store(#[from] StoreError),
}

impl From<kassa_domain::commands::Refusal> for AppError {
    fn from(refusal: kassa_domain::commands::Refusal) -> AppError {
        use kassa_domain::commands::Refusal;
        match refusal {
            Refusal::InvalidState(message) => AppError::InvalidState { message },
            Refusal::ExceedsRefundable { refundable_minor } => {
                AppError::AmountExceedsRefundable { refundable_minor }
            }
            Refusal::InvalidField { param, message } => AppError::invalid(param, message),
        }
    }
}

impl AppError {
    pub fn invalid(param: &str, message: impl Into<String>) -> AppError {
        AppError::InvalidRequest {
            param: Some(param.to_owned()),
            message: message.into(),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
