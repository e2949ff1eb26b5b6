//! `POST /v1/webhooks/stripe`: verify on the raw body, record, answer. And the operator's view
//! of the inbox: list failed or dead events, replay one.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_app::ports::{EventStatus, InboxEvent};
use kassa_app::webhooks::WebhookError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::HttpState;
use crate::auth::SecretKey;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery, read_body, single_header};

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

async fn receive(
    State(state): State<HttpState>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    // A delivery with two signature headers is as unverifiable as one with none.
    let signature = single_header(request.headers(), "stripe-signature")
        .ok()
        .flatten()
        .map(str::to_owned);
    let body = read_body(request, &state).await?;
    match state.app.receive_webhook(&body, signature.as_deref()).await {
        Ok(_) => Ok(Json(json!({ "received": true }))),
        Err(WebhookError::Rejected(reason)) => {
            tracing::warn!(%reason, "webhook delivery rejected");
            // One answer for every failed check: no oracle for forgers (risks G6, S8).
            Err(ApiError::invalid(None, "webhook not accepted"))
        }
        Err(WebhookError::NotRecorded(error)) => Err(error.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: String,
}

async fn list(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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
    let events: Vec<Value> = state
        .app
        .inbox_events(status)
        .await?
        .iter()
        .map(event_body)
        .collect();
    Ok(Json(json!({ "object": "list", "data": events })))
}

async fn replay(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let event = state.app.replay_inbox_event(&id).await?;
    Ok((StatusCode::OK, Json(event_body(&event))))
}

fn event_body(event: &InboxEvent) -> Value {
    json!({
        "id": event.id,
        "type": event.event_type,
        "status": event.status.as_str(),
        "attempts": event.attempts,
        "last_error": event.last_error,
        "received": event.received_at,
    })
}
