//! Marketplace sellers (secret key): a seller with a connected account at Stripe, whose
//! readiness to take charges Kassa keeps from Stripe's `account.updated` events.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_app::sellers::SellerInput;

use crate::HttpState;
use crate::auth::{Origin, SecretKey};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, single_header};
use crate::wire::{CreateSellerRequest, SellerBalanceBody, SellerBody};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/sellers", post(create))
        .route("/v1/sellers/{id}", get(seller))
        .route("/v1/sellers/{id}/balance", get(balance))
}

#[utoipa::path(
    post,
    path = "/v1/sellers",
    tag = "marketplace",
    request_body = crate::wire::CreateSellerRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "optional: the same key and body answer with the same seller, so a retry makes no second seller or account"),
    ),
    responses(
        (status = 201, description = "the seller and its connected account, not yet able to take charges until onboarding is done", body = crate::wire::SellerBody),
        (status = 402, description = "`provider_refused`", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`: retry with the same key", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn create(
    _: SecretKey,
    origin: Origin,
    State(state): State<HttpState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateSellerRequest>,
) -> Result<(StatusCode, Json<SellerBody>), ApiError> {
    let seller = state
        .app
        .create_seller(SellerInput {
            name: body.name,
            email: body.email,
            country: body.country,
            key_scope: "secret".into(),
            idempotency_key: single_header(&headers, "Idempotency-Key")?.map(str::to_owned),
            actor: origin.actor("operator (secret key)"),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(SellerBody::from(&seller))))
}

#[utoipa::path(
    get,
    path = "/v1/sellers/{id}",
    tag = "marketplace",
    params(
        ("id" = String, Path, description = "the seller"),
    ),
    responses(
        (status = 200, description = "the seller", body = crate::wire::SellerBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn seller(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SellerBody>, ApiError> {
    Ok(Json(SellerBody::from(&state.app.seller(&id).await?)))
}

#[utoipa::path(
    get,
    path = "/v1/sellers/{id}/balance",
    tag = "marketplace",
    params(
        ("id" = String, Path, description = "the seller"),
    ),
    responses(
        (status = 200, description = "per currency, what the seller was paid, what refunds took back, what is still owed, and what is held (owed of paid orders waiting for a person or a dispute, each with why)", body = crate::wire::SellerBalanceBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn balance(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SellerBalanceBody>, ApiError> {
    let balances = state.app.seller_balance(&id).await?;
    Ok(Json(SellerBalanceBody::new(&id, &balances)))
}
