//! Carts (publishable key). Rate limited per IP and per key.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};

use crate::HttpState;
use crate::auth::StorefrontKey;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::wire::{AddLineRequest, CartBody, CreateCartRequest, SetLineQuantityRequest};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/carts", post(create_cart))
        .route("/v1/carts/{id}", get(cart))
        .route("/v1/carts/{id}/lines", post(add_line))
        .route(
            "/v1/carts/{id}/lines/{line_id}",
            patch(set_line_quantity).delete(remove_line),
        )
}

#[utoipa::path(
    post,
    path = "/v1/carts",
    tag = "carts",
    request_body = crate::wire::CreateCartRequest,
    responses(
        (status = 201, description = "the new, empty cart", body = crate::wire::CartBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn create_cart(
    _key: StorefrontKey,
    State(state): State<HttpState>,
    ApiJson(body): ApiJson<CreateCartRequest>,
) -> Result<(StatusCode, Json<CartBody>), ApiError> {
    let cart = state.app.create_cart(&body.currency).await?;
    Ok((StatusCode::CREATED, Json(CartBody::from(&cart))))
}

#[utoipa::path(
    get,
    path = "/v1/carts/{id}",
    tag = "carts",
    params(
        ("id" = String, Path, description = "the cart"),
    ),
    responses(
        (status = 200, description = "the cart, priced now", body = crate::wire::CartBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn cart(
    _key: StorefrontKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CartBody>, ApiError> {
    Ok(Json(CartBody::from(&state.app.cart_view(&id).await?)))
}

#[utoipa::path(
    post,
    path = "/v1/carts/{id}/lines",
    tag = "carts",
    request_body = crate::wire::AddLineRequest,
    params(
        ("id" = String, Path, description = "the cart"),
    ),
    responses(
        (status = 200, description = "the cart", body = crate::wire::CartBody),
        (status = 404, description = "`not_found`: no such cart or SKU", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: the cart is checked out or expired", body = crate::error::ErrorBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn add_line(
    _key: StorefrontKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddLineRequest>,
) -> Result<Json<CartBody>, ApiError> {
    let cart = state
        .app
        .add_cart_line(&id, &body.sku, body.quantity)
        .await?;
    Ok(Json(CartBody::from(&cart)))
}

#[utoipa::path(
    patch,
    path = "/v1/carts/{id}/lines/{line_id}",
    tag = "carts",
    request_body = crate::wire::SetLineQuantityRequest,
    params(
        ("id" = String, Path, description = "the cart"),
        ("line_id" = String, Path, description = "the line"),
    ),
    responses(
        (status = 200, description = "the cart", body = crate::wire::CartBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: the cart is checked out or expired", body = crate::error::ErrorBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn set_line_quantity(
    _key: StorefrontKey,
    State(state): State<HttpState>,
    ApiPath((id, line_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetLineQuantityRequest>,
) -> Result<Json<CartBody>, ApiError> {
    let cart = state
        .app
        .set_cart_line_quantity(&id, &line_id, body.quantity)
        .await?;
    Ok(Json(CartBody::from(&cart)))
}

#[utoipa::path(
    delete,
    path = "/v1/carts/{id}/lines/{line_id}",
    tag = "carts",
    params(
        ("id" = String, Path, description = "the cart"),
        ("line_id" = String, Path, description = "the line"),
    ),
    responses(
        (status = 200, description = "the cart", body = crate::wire::CartBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: the cart is checked out or expired", body = crate::error::ErrorBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn remove_line(
    _key: StorefrontKey,
    State(state): State<HttpState>,
    ApiPath((id, line_id)): ApiPath<(String, String)>,
) -> Result<Json<CartBody>, ApiError> {
    let cart = state.app.remove_cart_line(&id, &line_id).await?;
    Ok(Json(CartBody::from(&cart)))
}
