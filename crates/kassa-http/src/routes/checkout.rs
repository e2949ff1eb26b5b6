//! `POST /v1/carts/{id}/checkout` and `POST /v1/carts/{id}/checkout_session` (publishable key,
//! `Idempotency-Key` required): the embedded and the hosted flow of one checkout saga, and the
//! renderer that turns its outcomes into the answers stored on the key and replayed for retries.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kassa_app::AppError;
use kassa_app::checkout::{
    CheckoutCreated, CheckoutFlow, CheckoutInput, CheckoutRenderer, SessionCreated,
};
use kassa_app::ports::{ShippingAddress, StoredResponse};

use crate::HttpState;
use crate::auth::{Origin, StorefrontKey};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, single_header};
use crate::wire::{
    CheckoutBody, CheckoutOrderBody, CheckoutPaymentBody, CheckoutRequest, CheckoutSessionBody,
    HostedSessionBody,
};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/carts/{id}/checkout", post(checkout))
        .route("/v1/carts/{id}/checkout_session", post(checkout_session))
}

#[utoipa::path(
    post,
    path = "/v1/carts/{id}/checkout",
    tag = "checkout",
    request_body = crate::wire::CheckoutRequest,
    params(
        ("id" = String, Path, description = "the cart"),
        ("Idempotency-Key" = String, Header, description = "required: the client's key for this request; the same key and body replay the first answer"),
    ),
    responses(
        (status = 201, description = "the order and its PaymentIntent; replays carry `Idempotent-Replayed: true`", body = crate::wire::CheckoutBody),
        (status = 402, description = "`provider_refused`: Stripe refused; nothing was charged and the stock is released", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`insufficient_stock` (with `skus`), `price_changed` (with `total`), `cart_already_checked_out` (with `order_id`), `seller_unavailable` (with `seller_id`: nothing reserved, or the reservation released), `request_in_progress` (with `Retry-After`), `invalid_state`", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the same key with a different body; `amount_too_small`: the total is below Stripe's minimum charge in its currency (nothing reserved)", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`: Stripe did not answer; retry with the same key", body = crate::error::ErrorBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn checkout(
    key: StorefrontKey,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(cart_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Response, ApiError> {
    let request = (key, origin, cart_id, headers, body);
    run(&state, CheckoutFlow::Embedded, request).await
}

#[utoipa::path(
    post,
    path = "/v1/carts/{id}/checkout_session",
    tag = "checkout",
    request_body = crate::wire::CheckoutRequest,
    params(
        ("id" = String, Path, description = "the cart"),
        ("Idempotency-Key" = String, Header, description = "required: the client's key for this request; the same key and body replay the first answer"),
    ),
    responses(
        (status = 201, description = "the order and the hosted payment page to send the customer to (`checkout_session.url`); its success and cancel URLs come from configuration, never from the request; replays carry `Idempotent-Replayed: true`", body = crate::wire::CheckoutSessionBody),
        (status = 402, description = "`provider_refused`: Stripe refused; nothing was charged and the stock is released", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`insufficient_stock` (with `skus`), `price_changed` (with `total`), `cart_already_checked_out` (with `order_id`), `request_in_progress` (with `Retry-After`), `invalid_state` (also when hosted checkout is not configured)", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the same key with a different body, or first used for the other flow; `amount_too_small`: the total is below Stripe's minimum charge in its currency (nothing reserved)", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`: Stripe did not answer; retry with the same key", body = crate::error::ErrorBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn checkout_session(
    key: StorefrontKey,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(cart_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Response, ApiError> {
    let request = (key, origin, cart_id, headers, body);
    run(&state, CheckoutFlow::Hosted, request).await
}

/// Either flow: the request becomes the saga's input; its stored answer goes back as it was
/// stored, the same for the first request and every replay.
async fn run(
    state: &HttpState,
    flow: CheckoutFlow,
    (key, origin, cart_id, headers, body): (
        StorefrontKey,
        Origin,
        String,
        HeaderMap,
        CheckoutRequest,
    ),
) -> Result<Response, ApiError> {
    let idempotency_key = single_header(&headers, "Idempotency-Key")?.map(str::to_owned);
    let address = body.shipping_address;
    let input = CheckoutInput {
        cart_id,
        key_scope: key.scope.to_owned(),
        idempotency_key,
        email: body.email,
        shipping: ShippingAddress {
            name: address.name,
            line1: address.line1,
            city: address.city,
            postal_code: address.postal_code,
            country: address.country,
        },
        expected_total_minor: body.expected_total,
        flow,
        actor: origin.actor(format!("storefront ({} key)", key.scope)),
    };
    let reply = state.app.checkout(input).await?;
    let status =
        StatusCode::from_u16(reply.response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        reply.response.body,
    )
        .into_response();
    if reply.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Renders checkout answers as API.md's JSON.
pub struct JsonCheckoutRenderer;

impl CheckoutRenderer for JsonCheckoutRenderer {
    fn created(&self, created: &CheckoutCreated) -> StoredResponse {
        let body = CheckoutBody {
            order: CheckoutOrderBody {
                id: created.order_id.clone(),
                status: created.order_status.clone(),
                total: created.total.amount_minor(),
                currency: created.total.currency().code().to_owned(),
            },
            payment: CheckoutPaymentBody {
                id: created.payment_id.clone(),
                payment_intent_id: created.payment_intent_id.clone(),
                client_secret: created.client_secret.clone(),
                status: created.payment_status.clone(),
            },
            order_token: created.order_token.clone(),
        };
        StoredResponse {
            status: StatusCode::CREATED.as_u16(),
            body: serde_json::to_string(&body).unwrap_or_default(),
        }
    }

    fn session_created(&self, created: &SessionCreated) -> StoredResponse {
        let body = CheckoutSessionBody {
            order: CheckoutOrderBody {
                id: created.order_id.clone(),
                status: created.order_status.clone(),
                total: created.total.amount_minor(),
                currency: created.total.currency().code().to_owned(),
            },
            checkout_session: HostedSessionBody {
                id: created.session_id.clone(),
                url: created.url.clone(),
                expires_at: created.expires_at,
            },
            order_token: created.order_token.clone(),
        };
        StoredResponse {
            status: StatusCode::CREATED.as_u16(),
            body: serde_json::to_string(&body).unwrap_or_default(),
        }
    }

    fn refused(&self, error: &AppError) -> StoredResponse {
        let (status, _, body) = ApiError::from(error.clone()).parts();
        StoredResponse {
            status: status.as_u16(),
            body: body.to_string(),
        }
    }
}
