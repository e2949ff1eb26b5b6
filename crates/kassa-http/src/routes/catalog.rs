//! Catalog and stock (secret key).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use kassa_app::catalog::{NewProduct, NewVariant};

use crate::HttpState;
use crate::auth::SecretKey;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::wire::{
    CreateProductRequest, InventoryBody, ProductBody, SetInventoryRequest, UpdateVariantRequest,
    VariantBody,
};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/products", post(create_product))
        .route("/v1/variants/{sku}", patch(update_variant))
        .route("/v1/inventory/{sku}", get(inventory).put(set_inventory))
}

#[utoipa::path(
    post,
    path = "/v1/products",
    tag = "catalog",
    request_body = crate::wire::CreateProductRequest,
    responses(
        (status = 201, description = "the product with its variants", body = crate::wire::ProductBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn create_product(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiJson(body): ApiJson<CreateProductRequest>,
) -> Result<(StatusCode, Json<ProductBody>), ApiError> {
    let input = NewProduct {
        name: body.name,
        variants: body
            .variants
            .into_iter()
            .map(|v| NewVariant {
                sku: v.sku,
                unit_amount_minor: v.unit_amount,
                currency: v.currency,
                attributes: v.attributes,
                credits: v.credits,
            })
            .collect(),
        seller_id: body.seller_id,
    };
    let product = state.app.create_product(input).await?;
    Ok((StatusCode::CREATED, Json(ProductBody::from(&product))))
}

#[utoipa::path(
    patch,
    path = "/v1/variants/{sku}",
    tag = "catalog",
    request_body = crate::wire::UpdateVariantRequest,
    params(
        ("sku" = String, Path, description = "the variant"),
    ),
    responses(
        (status = 200, description = "the variant; carts see the new price, placed orders never", body = crate::wire::VariantBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn update_variant(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateVariantRequest>,
) -> Result<Json<VariantBody>, ApiError> {
    let variant = state
        .app
        .update_variant(&sku, body.unit_amount, body.active)
        .await?;
    Ok(Json(VariantBody::from(&variant)))
}

#[utoipa::path(
    put,
    path = "/v1/inventory/{sku}",
    tag = "catalog",
    request_body = crate::wire::SetInventoryRequest,
    params(
        ("sku" = String, Path, description = "the variant"),
    ),
    responses(
        (status = 200, description = "stock by location", body = crate::wire::InventoryBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn set_inventory(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<SetInventoryRequest>,
) -> Result<Json<InventoryBody>, ApiError> {
    let levels = state
        .app
        .set_on_hand(&sku, body.location.as_deref(), body.on_hand)
        .await?;
    Ok(Json(InventoryBody::new(&sku, &levels)))
}

#[utoipa::path(
    get,
    path = "/v1/inventory/{sku}",
    tag = "catalog",
    params(
        ("sku" = String, Path, description = "the variant"),
    ),
    responses(
        (status = 200, description = "stock by location", body = crate::wire::InventoryBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn inventory(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(sku): ApiPath<String>,
) -> Result<Json<InventoryBody>, ApiError> {
    let levels = state.app.inventory(&sku).await?;
    Ok(Json(InventoryBody::new(&sku, &levels)))
}
