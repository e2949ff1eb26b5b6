//! `POST /v1/webhooks/stripe`: verify on the raw body, record, answer. And the operator's view
//! of the inbox: list failed or dead events, replay one.

use axum::extract::{Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_app::ports::{EventStatus, InboxEvent};
use kassa_app::webhooks::WebhookError;
use serde::Deserialize;

use crate::HttpState;
use crate::auth::SecretKey;
use crate::error::ApiError;
use crate::extract::{ApiJsonOrEmpty, ApiPath, ApiQuery, read_body_up_to, single_header};
use crate::wire::{NoFields, ReceivedBody, WebhookEventBody, WebhookEventList};

/// Stripe events with embedded lists can exceed the API's 64 KiB; this is still bounded.
pub const WEBHOOK_BODY_MAX_BYTES: usize = 512 * 1024;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/admin/webhook-events", get(list))
        .route("/v1/admin/webhook-events/{id}/replay", post(replay))
}

/// The public webhook route, mounted with its own body limit and rate limit.
pub fn stripe_router() -> Router<HttpState> {
    Router::new().route("/v1/webhooks/stripe", post(receive))
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/stripe",
    tag = "webhooks",
    request_body(content = Object, description = "a Stripe event, exactly as Stripe sent it"),
    params(
        ("Stripe-Signature" = String, Header, description = "Stripe's signature of the raw body"),
    ),
    responses(
        (status = 200, description = "recorded (or recorded before)", body = crate::wire::ReceivedBody),
        (status = 400, description = "`invalid_request`: not accepted (one answer for every failed check)", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`: this address sent too many deliveries that failed verification", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn receive(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Json<ReceivedBody>, ApiError> {
    let client = crate::client_addr::client_of(request.extensions());
    // A delivery with two signature headers is as unverifiable as one with none.
    let signature = single_header(request.headers(), "stripe-signature")
        .ok()
        .flatten()
        .map(str::to_owned);
    let body = read_body_up_to(request, &state, WEBHOOK_BODY_MAX_BYTES).await?;
    match state.app.receive_webhook(&body, signature.as_deref()).await {
        Ok(_) => Ok(Json(ReceivedBody { received: true })),
        Err(WebhookError::Rejected(reason)) => {
            tracing::warn!(%reason, "webhook delivery rejected");
            // Verification comes first, so only failures spend this address's budget: a
            // signed delivery is never refused for others' load (risk D1).
            if let (Some(limit), Some(client)) = (&state.rate_limit, client) {
                limit.failed_webhook(client)?;
            }
            // One answer for every failed check: no oracle for forgers (risks G6, S8).
            Err(ApiError::invalid(None, "webhook not accepted"))
        }
        Err(WebhookError::NotRecorded(error)) => Err(error.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: String,
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhook-events",
    tag = "admin",
    params(
        ("status" = crate::wire::EventStatusFilter, Query, description = "which events"),
    ),
    responses(
        (status = 200, description = "the events, oldest first", body = crate::wire::WebhookEventList),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn list(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<WebhookEventList>, ApiError> {
    let status = match query.status.as_str() {
        "failed" => EventStatus::Failed,
        "dead" => EventStatus::Dead,
        _ => {
            return Err(ApiError::invalid(
                Some("status".into()),
                "must be failed or dead",
            ));
        }
    };
    let data = state
        .app
        .inbox_events(status)
        .await?
        .iter()
        .map(event_body)
        .collect();
    Ok(Json(WebhookEventList {
        object: "list",
        data,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhook-events/{id}/replay",
    tag = "admin",
    request_body(content = crate::wire::NoFields, description = "optional: no body, or `{}`"),
    params(
        ("id" = String, Path, description = "the event"),
    ),
    responses(
        (status = 200, description = "the event, due again", body = crate::wire::WebhookEventBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: neither failed nor dead", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn replay(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(NoFields {}): ApiJsonOrEmpty<NoFields>,
) -> Result<Json<WebhookEventBody>, ApiError> {
    let event = state.app.replay_inbox_event(&id).await?;
    Ok(Json(event_body(&event)))
}

fn event_body(event: &InboxEvent) -> WebhookEventBody {
    WebhookEventBody {
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        status: event.status.as_str().to_owned(),
        attempts: event.attempts,
        last_error: event.last_error.clone(),
        received: event.received_at,
    }
}
