//! Who is calling: the secret key (everything), the publishable key (carts and checkout only).
//! Keys are compared in constant time so response timing is no oracle for the key (risk S8).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use crate::HttpState;
use crate::error::ApiError;

/// The two API keys of this Kassa.
#[derive(Clone)]
pub struct ApiKeys {
    pub secret: String,
    pub publishable: String,
}

/// Extractor: the request carries the secret key.
pub struct SecretKey;

/// Extractor: the request carries the publishable or the secret key; says which, because
/// idempotency keys are scoped to the API key that sent them.
pub struct StorefrontKey {
    pub scope: &'static str,
}

/// Extractor for order reads: the operator (secret key) or a customer with an order token.
pub enum OrderReader {
    Operator,
    Customer { token: String },
}

impl FromRequestParts<HttpState> for OrderReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        let presented = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if same(presented, &state.keys.secret) {
            Ok(OrderReader::Operator)
        } else if same(presented, &state.keys.publishable) {
            Err(ApiError::Forbidden)
        } else {
            Ok(OrderReader::Customer {
                token: presented.to_owned(),
            })
        }
    }
}

/// The request id for the audit trail: the caller's `X-Request-Id` if it is short and printable,
/// else a fresh one.
pub fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || format!("req_{}", uuid::Uuid::new_v4().simple()),
            str::to_owned,
        )
}

/// Where a request came from, for the audit trail (risk A1): its request id (set on every
/// request by the request-id layer) and the client's address.
pub struct Origin {
    pub request_id: String,
    pub client_ip: Option<String>,
}

impl Origin {
    /// The audit actor for this request, acting as `kind`.
    pub fn actor(&self, kind: impl Into<String>) -> kassa_app::ports::Actor {
        kassa_app::ports::Actor {
            kind: kind.into(),
            request_id: Some(self.request_id.clone()),
            client_ip: self.client_ip.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let client_ip = crate::client_addr::client_of(&parts.extensions).map(|ip| ip.to_string());
        Ok(Origin {
            request_id: request_id(&parts.headers),
            client_ip,
        })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// True if `presented` is this Kassa's secret key (constant-time).
pub fn is_secret_key(presented: &str, state: &HttpState) -> bool {
    same(presented.trim(), &state.keys.secret)
}

fn same(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

impl FromRequestParts<HttpState> for SecretKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        let presented = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if same(presented, &state.keys.secret) {
            Ok(SecretKey)
        } else if same(presented, &state.keys.publishable) {
            Err(ApiError::Forbidden)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

impl FromRequestParts<HttpState> for StorefrontKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &HttpState,
    ) -> Result<Self, Self::Rejection> {
        let presented = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if same(presented, &state.keys.publishable) {
            Ok(StorefrontKey {
                scope: "publishable",
            })
        } else if same(presented, &state.keys.secret) {
            Ok(StorefrontKey { scope: "secret" })
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
