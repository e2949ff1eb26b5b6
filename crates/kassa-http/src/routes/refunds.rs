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

#[utoipa::path(
    post,
    path = "/v1/refunds",
    tag = "refunds",
    request_body = crate::wire::RefundRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "required: the client's key for this request; the same key and body replay the first answer"),
    ),
    responses(
        (status = 201, description = "the refund, `pending` until Stripe answers", body = crate::wire::RefundBody),
        (status = 402, description = "`provider_refused`", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: nothing captured, or a dispute is open", body = crate::error::ErrorBody),
        (status = 422, description = "`amount_exceeds_refundable` (with `refundable`), `idempotency_key_reused`", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn create(
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
