//! Orders: read (`GET /v1/orders/{id}`), change (`PATCH`), cancel and capture, resolve a flag
//! (`POST /v1/orders/{id}/resolve`, the operator only), for the operator
//! (secret key) or the customer (order token as the Bearer credential, never in the URL; reads
//! for 30 days, changes inside the modification window). Every answer is `Cache-Control:
//! no-store`.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_app::order_commands::{EditRequest, Requester};
use kassa_app::ports::ShippingAddress;
use kassa_domain::commands::LineChange;

use crate::HttpState;
use crate::auth::{OrderReader, Origin, SecretKey};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath};
use crate::wire::{
    AuditEventBody, AuditEventList, CaptureRequest, EditOrderRequest, NoFields, OrderBody,
    ResolveRequest,
};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/orders/{id}", get(order).patch(edit))
        .route("/v1/orders/{id}/events", get(events))
        .route("/v1/orders/{id}/cancel", post(cancel))
        .route("/v1/orders/{id}/refresh", post(refresh))
        .route("/v1/orders/{id}/capture", post(capture))
        .route("/v1/orders/{id}/resolve", post(resolve))
        .layer(axum::middleware::map_response(no_store))
}

/// Order answers carry personal data and live tokens' results: never cached (risk S2).
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(
        ("id" = String, Path, description = "the order"),
    ),
    responses(
        (status = 200, description = "the whole order (secret key), or status, lines, totals and a masked address (order token)", body = crate::wire::OrderBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = []), ("order_token" = [])),
)]
pub(crate) async fn order(
    reader: OrderReader,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderBody>, ApiError> {
    view(&state, &id, &requester(reader)).await
}

/// The order as `requester` may see it: everything for the operator, masked for the customer.
async fn view(
    state: &HttpState,
    id: &str,
    requester: &Requester,
) -> Result<Json<OrderBody>, ApiError> {
    match requester {
        Requester::Operator => Ok(Json(OrderBody::full(&state.app.order(id).await?))),
        Requester::Customer { token } => {
            let view = state
                .app
                .order_for_customer(id, token)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            Ok(Json(OrderBody::for_customer(&view.order, view.can_modify)))
        }
    }
}

fn requester(reader: OrderReader) -> Requester {
    match reader {
        OrderReader::Operator => Requester::Operator,
        OrderReader::Customer { token } => Requester::Customer { token },
    }
}

fn actor_kind(requester: &Requester) -> &'static str {
    match requester {
        Requester::Operator => "operator (secret key)",
        Requester::Customer { .. } => "customer (order token)",
    }
}

#[utoipa::path(
    patch,
    path = "/v1/orders/{id}",
    tag = "orders",
    request_body = crate::wire::EditOrderRequest,
    params(
        ("id" = String, Path, description = "the order"),
    ),
    responses(
        (status = 200, description = "the order as changed", body = crate::wire::OrderBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: outside the modification window or not editable; `insufficient_stock`", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = []), ("order_token" = [])),
)]
pub(crate) async fn edit(
    reader: OrderReader,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EditOrderRequest>,
) -> Result<Json<OrderBody>, ApiError> {
    let requester = requester(reader);
    let request = EditRequest {
        shipping: body.shipping_address.map(|a| ShippingAddress {
            name: a.name,
            line1: a.line1,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
        }),
        lines: body
            .lines
            .unwrap_or_default()
            .into_iter()
            .map(|line| LineChange {
                sku: line.sku,
                quantity: line.quantity,
            })
            .collect(),
    };
    let actor = origin.actor(actor_kind(&requester));
    state
        .app
        .edit_order(&id, request, &requester, &actor)
        .await?;
    view(&state, &id, &requester).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    tag = "orders",
    request_body(content = crate::wire::NoFields, description = "optional: no body, or `{}`"),
    params(
        ("id" = String, Path, description = "the order"),
    ),
    responses(
        (status = 200, description = "the canceled order: canceled at Stripe first, then the stock released", body = crate::wire::OrderBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: already captured, or outside the window", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = []), ("order_token" = [])),
)]
pub(crate) async fn cancel(
    reader: OrderReader,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(NoFields {}): ApiJsonOrEmpty<NoFields>,
) -> Result<Json<OrderBody>, ApiError> {
    let requester = requester(reader);
    let actor = origin.actor(actor_kind(&requester));
    state.app.cancel_order(&id, &requester, &actor).await?;
    view(&state, &id, &requester).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/refresh",
    tag = "orders",
    request_body(content = crate::wire::NoFields, description = "optional: no body, or `{}`"),
    params(
        ("id" = String, Path, description = "the order"),
    ),
    responses(
        (status = 200, description = "the order, after Stripe was asked about its payment and the answer applied as its webhook would be", body = crate::wire::OrderBody),
        (status = 401, description = "`unauthorized`: not this order's token", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: the order has no PaymentIntent yet", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`: this order was refreshed too often", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = []), ("order_token" = [])),
)]
pub(crate) async fn refresh(
    reader: OrderReader,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(NoFields {}): ApiJsonOrEmpty<NoFields>,
) -> Result<Json<OrderBody>, ApiError> {
    let requester = requester(reader);
    // Only someone who may read the order makes Kassa ask Stripe about it.
    let _may_read = view(&state, &id, &requester).await?;
    if let Some(limit) = &state.rate_limit {
        limit.refresh(&id)?;
    }
    let actor = origin.actor(actor_kind(&requester));
    state.app.refresh_payment(&id, &actor).await?;
    view(&state, &id, &requester).await
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/capture",
    tag = "orders",
    request_body(content = crate::wire::CaptureRequest, description = "optional; empty: capture what the order says"),
    params(
        ("id" = String, Path, description = "the order"),
    ),
    responses(
        (status = 200, description = "the captured order", body = crate::wire::OrderBody),
        (status = 402, description = "`provider_refused`", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: nothing to capture", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn capture(
    _: SecretKey,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CaptureRequest>,
) -> Result<Json<OrderBody>, ApiError> {
    let actor = origin.actor("operator (secret key)");
    let order = state.app.capture_order(&id, body.amount, &actor).await?;
    Ok(Json(OrderBody::full(&order)))
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/resolve",
    tag = "orders",
    request_body = crate::wire::ResolveRequest,
    params(
        ("id" = String, Path, description = "the order"),
    ),
    responses(
        (status = 200, description = "the order, its flag cleared by the action (see docs/guides/after-payment.md, \"When an order needs attention\"): `attention` is gone and the order's background work resumes", body = crate::wire::OrderBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: the order is not flagged, its reason does not take this action (the message names those it does), or the order cannot make the action's moves (the stock is still gone, Stripe still reports the difference); nothing changed", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`: Stripe did not answer; the flag stays, retry", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn resolve(
    _: SecretKey,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ResolveRequest>,
) -> Result<Json<OrderBody>, ApiError> {
    let actor = origin.actor("operator (secret key)");
    let request = kassa_app::attention::ResolveRequest {
        action: body.action,
        note: body.note,
    };
    let order = state.app.resolve_attention(&id, request, &actor).await?;
    Ok(Json(OrderBody::full(&order)))
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}/events",
    tag = "orders",
    params(
        ("id" = String, Path, description = "the order"),
    ),
    responses(
        (status = 200, description = "the audit trail, oldest first", body = crate::wire::AuditEventList),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn events(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AuditEventList>, ApiError> {
    let data = state
        .app
        .order_events(&id)
        .await?
        .iter()
        .map(AuditEventBody::from)
        .collect();
    Ok(Json(AuditEventList {
        object: "list",
        data,
    }))
}
