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

async fn create_product(
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
            })
            .collect(),
    };
    let product = state.app.create_product(input).await?;
    Ok((StatusCode::CREATED, Json(ProductBody::from(&product))))
}

async fn update_variant(
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

async fn set_inventory(
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

async fn inventory(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(sku): ApiPath<String>,
) -> Result<Json<InventoryBody>, ApiError> {
    let levels = state.app.inventory(&sku).await?;
    Ok(Json(InventoryBody::new(&sku, &levels)))
}
