//! Plans, subscriptions, customers and their credits (seed 003). Subscribing is the
//! storefront's (publishable key); everything else is the shop's (secret key).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_app::subscriptions::{DebitInput, NewPlan, SubscribeInput};

use crate::HttpState;
use crate::auth::{Origin, SecretKey, StorefrontKey};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, single_header};
use crate::wire::{
    CancelSubscriptionRequest, CreatePlanRequest, CreditEntryBody, CreditsBody, CustomerBody,
    DebitRequest, PlanBody, SubscribeBody, SubscribeRequest, SubscriptionBody,
};

/// The storefront's call, rate-limited with the other public ones.
pub fn storefront_router() -> Router<HttpState> {
    Router::new().route("/v1/subscriptions/checkout_session", post(subscribe))
}

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/plans", post(create_plan))
        .route("/v1/subscriptions/{id}/cancel", post(cancel))
        .route("/v1/customers/{id}", get(customer))
        .route("/v1/customers/{id}/credits", get(credits))
        .route("/v1/customers/{id}/credits/debit", post(debit))
}

#[utoipa::path(
    post,
    path = "/v1/plans",
    tag = "subscriptions",
    request_body = crate::wire::CreatePlanRequest,
    responses(
        (status = 201, description = "the plan", body = crate::wire::PlanBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn create_plan(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiJson(body): ApiJson<CreatePlanRequest>,
) -> Result<(StatusCode, Json<PlanBody>), ApiError> {
    let plan = state
        .app
        .create_plan(NewPlan {
            name: body.name,
            unit_amount_minor: body.unit_amount,
            currency: body.currency,
            interval: body.interval,
            credits: body.credits,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(PlanBody::from(&plan))))
}

#[utoipa::path(
    post,
    path = "/v1/subscriptions/checkout_session",
    tag = "subscriptions",
    request_body = crate::wire::SubscribeRequest,
    params(
        ("Idempotency-Key" = String, Header, description = "required: the client's key for this request; the same key and body answer with the same subscription and page"),
    ),
    responses(
        (status = 201, description = "the customer (an opaque id), the `incomplete` subscription and the hosted page to send the customer to; credits come with each paid invoice. An e-mail holds one subscription per plan: while one of its pages is open, another key answers with that same subscription and page", body = crate::wire::SubscribeBody),
        (status = 402, description = "`provider_refused`: Stripe refused the page; the subscription is canceled", body = crate::error::ErrorBody),
        (status = 404, description = "`not_found`: no such plan", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: hosted checkout is not configured; the subscription was ended; or the e-mail already holds this plan (active, past due, or its page paid and not yet reported), named in the message: nothing is started, never a second charge", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the same key for another plan or e-mail", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`: Stripe did not answer; retry with the same key", body = crate::error::ErrorBody),
    ),
    security(("publishable_key" = []), ("secret_key" = [])),
)]
pub(crate) async fn subscribe(
    key: StorefrontKey,
    origin: Origin,
    State(state): State<HttpState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SubscribeRequest>,
) -> Result<(StatusCode, Json<SubscribeBody>), ApiError> {
    let page = state
        .app
        .subscribe(SubscribeInput {
            plan_id: body.plan_id,
            email: body.email,
            key_scope: key.scope.to_owned(),
            idempotency_key: single_header(&headers, "Idempotency-Key")?.map(str::to_owned),
            actor: origin.actor(format!("storefront ({} key)", key.scope)),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(SubscribeBody::from(&page))))
}

#[utoipa::path(
    post,
    path = "/v1/subscriptions/{id}/cancel",
    tag = "subscriptions",
    request_body(content = crate::wire::CancelSubscriptionRequest, description = "optional: no body is `{}`"),
    params(
        ("id" = String, Path, description = "the subscription"),
    ),
    responses(
        (status = 200, description = "the subscription: `cancel_at_period_end` set (the customer keeps the period paid for), or `canceled`", body = crate::wire::SubscriptionBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`", body = crate::error::ErrorBody),
        (status = 503, description = "`provider_unavailable`: Stripe did not answer; retry", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn cancel(
    _: SecretKey,
    origin: Origin,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CancelSubscriptionRequest>,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let actor = origin.actor("operator (secret key)");
    let subscription = state
        .app
        .cancel_subscription(&id, body.at_period_end.unwrap_or(true), &actor)
        .await?;
    Ok(Json(SubscriptionBody::from(&subscription)))
}

#[utoipa::path(
    get,
    path = "/v1/customers/{id}",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "the customer"),
    ),
    responses(
        (status = 200, description = "the customer, their subscriptions and balance", body = crate::wire::CustomerBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn customer(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CustomerBody>, ApiError> {
    let view = state.app.customer_view(&id).await?;
    Ok(Json(CustomerBody::from(&view)))
}

#[utoipa::path(
    get,
    path = "/v1/customers/{id}/credits",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "the customer"),
    ),
    responses(
        (status = 200, description = "the balance (the sum of all entries) and the newest entries", body = crate::wire::CreditsBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn credits(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<CreditsBody>, ApiError> {
    let (balance, entries) = state.app.customer_credits(&id).await?;
    Ok(Json(CreditsBody {
        balance,
        entries: entries.iter().map(CreditEntryBody::from).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/customers/{id}/credits/debit",
    tag = "subscriptions",
    request_body = crate::wire::DebitRequest,
    params(
        ("id" = String, Path, description = "the customer"),
        ("Idempotency-Key" = String, Header, description = "required: the same key and body answer with the entry the first request wrote"),
    ),
    responses(
        (status = 201, description = "the debit's entry", body = crate::wire::CreditEntryBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`insufficient_credits` (with `balance`): nothing was spent", body = crate::error::ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the same key with another amount or reason", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn debit(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DebitRequest>,
) -> Result<(StatusCode, Json<CreditEntryBody>), ApiError> {
    let entry = state
        .app
        .debit_credits(DebitInput {
            customer_id: id,
            key_scope: "secret".into(),
            idempotency_key: single_header(&headers, "Idempotency-Key")?.map(str::to_owned),
            amount: body.amount,
            reason: body.reason,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(CreditEntryBody::from(&entry))))
}
