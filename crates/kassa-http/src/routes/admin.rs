//! Operator actions over HTTP (secret key): `POST /v1/admin/reconcile` runs one reconciliation
//! and answers what it found.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_app::check::CheckReport;
use kassa_app::ports::NotificationStatus;
use kassa_app::reconcile::{Quietly, ReconcileReport};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::HttpState;
use crate::auth::SecretKey;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/admin/reconcile", post(reconcile))
        .route("/v1/admin/check", post(check))
        .route("/v1/admin/notifications", get(notifications))
        .route(
            "/v1/admin/notifications/{id}/replay",
            post(replay_notification),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    status: String,
}

/// `GET /v1/admin/notifications?status=pending|delivered|failed|dead`.
async fn notifications(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = NotificationStatus::parse(&query.status).ok_or_else(|| {
        ApiError::invalid(
            Some("status".into()),
            "must be pending, delivered, failed or dead",
        )
    })?;
    let data: Vec<Value> = state
        .app
        .notifications(status)
        .await?
        .iter()
        .map(|n| {
            json!({
                "id": n.id, "type": n.topic, "status": n.status.as_str(), "attempts": n.attempts,
                "last_error": n.last_error, "created": n.created_at,
            })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `POST /v1/admin/notifications/{id}/replay`: a failed or dead notification is due again.
async fn replay_notification(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    state.app.replay_notification(&id).await?;
    Ok(Json(json!({ "id": id, "status": "pending" })))
}

async fn reconcile(_: SecretKey, State(state): State<HttpState>) -> Result<Json<Value>, ApiError> {
    let report = state.app.reconcile(&Quietly).await?;
    Ok(Json(report_body(&report)))
}

/// `POST /v1/admin/check`: the invariants of SPEC §3 against the database and the provider.
async fn check(_: SecretKey, State(state): State<HttpState>) -> Result<Json<Value>, ApiError> {
    let report = state.app.check_invariants().await?;
    Ok(Json(check_body(&report)))
}

/// The check's report as JSON; `kassa check` prints the same fields.
pub fn check_body(report: &CheckReport) -> Value {
    json!({
        "passed": report.passed(),
        "payments_checked": report.payments_checked,
        "provider_errors": report.provider_errors,
        "violations": report.violations.iter()
            .map(|v| json!({"invariant": v.invariant, "ids": v.ids, "what": v.what}))
            .collect::<Vec<_>>(),
    })
}

/// The report as JSON; `kassa reconcile` prints the same fields.
pub fn report_body(report: &ReconcileReport) -> Value {
    json!({
        "payments_checked": report.payments_checked,
        "refunds_checked": report.refunds_checked,
        "events_read": report.events_read,
        "events_recovered": report.events_recovered,
        "provider_errors": report.provider_errors,
        "differences": report.differences.iter()
            .map(|(order_id, what)| json!({"order_id": order_id, "what": what}))
            .collect::<Vec<_>>(),
    })
}
