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

/// Extractor: the request carries the publishable or the secret key.
pub struct StorefrontKey;

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
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
        if same(presented, &state.keys.publishable) || same(presented, &state.keys.secret) {
            Ok(StorefrontKey)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}
