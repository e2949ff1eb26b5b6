//! `POST /v1/refunds` (secret key, `Idempotency-Key` required): refund part or the rest of an
//! order's captured payment.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kassa_app::refunds::RefundInput;

use crate::HttpState;
use crate::auth::{Origin, SecretKey};
use crate::error::ApiError;
use crate::extract::{ApiJson, single_header};
use crate::wire::{RefundBody, RefundRequest};

pub fn router() -> Router<HttpState> {
    Router::new().route("/v1/refunds", post(create))
}

async fn create(
    _: SecretKey,
    origin: Origin,
    State(state): State<HttpState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundRequest>,
) -> Result<(StatusCode, Json<RefundBody>), ApiError> {
    let input = RefundInput {
        order_id: body.order_id,
        key_scope: "secret".into(),
        idempotency_key: single_header(&headers, "Idempotency-Key")?.map(str::to_owned),
        amount_minor: body.amount,
        reason: body.reason,
        restock: body.restock.unwrap_or(false),
        actor: origin.actor("operator (secret key)"),
    };
    let refund = state.app.create_refund(input).await?;
    Ok((StatusCode::CREATED, Json(RefundBody::from(&refund))))
}
