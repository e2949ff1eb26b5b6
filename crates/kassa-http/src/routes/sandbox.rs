//! `GET /v1/sandbox` (secret key): the built-in emulator's address and keys; 404 outside
//! sandbox mode, so a production deployment never advertises test credentials.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::HttpState;
use crate::auth::SecretKey;
use crate::error::ApiError;
use crate::wire::SandboxBody;

pub fn router() -> Router<HttpState> {
    Router::new().route("/v1/sandbox", get(sandbox))
}

#[utoipa::path(
    get,
    path = "/v1/sandbox",
    tag = "sandbox",
    responses(
        (status = 200, description = "the built-in emulator's address and keys", body = crate::wire::SandboxBody),
        (status = 404, description = "`not_found`: not in sandbox mode", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn sandbox(
    _: SecretKey,
    State(state): State<HttpState>,
) -> Result<Json<SandboxBody>, ApiError> {
    state
        .sandbox
        .as_deref()
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("not running in sandbox mode".into()))
}
