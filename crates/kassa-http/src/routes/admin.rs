//! Operator actions over HTTP (secret key): `POST /v1/admin/reconcile` runs one reconciliation
//! and answers what it found.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use kassa_app::check::CheckReport;
use kassa_app::ports::NotificationStatus;
use kassa_app::reconcile::{Quietly, ReconcileReport};
use serde::Deserialize;
use serde_json::Value;

use crate::HttpState;
use crate::auth::SecretKey;
use crate::error::ApiError;
use crate::extract::{ApiJsonOrEmpty, ApiPath, ApiQuery};
use crate::wire::{
    CheckBody, DifferenceBody, NoFields, NotificationBody, NotificationList, ReconcileBody,
    ReplayedBody, ViolationBody,
};

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
pub(crate) struct StatusQuery {
    status: String,
}

/// `GET /v1/admin/notifications?status=pending|delivered|failed|dead`.
#[utoipa::path(
    get,
    path = "/v1/admin/notifications",
    tag = "admin",
    params(
        ("status" = crate::wire::NotificationStatusFilter, Query, description = "which notifications"),
    ),
    responses(
        (status = 200, description = "the notifications", body = crate::wire::NotificationList),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn notifications(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> Result<Json<NotificationList>, ApiError> {
    let status = NotificationStatus::parse(&query.status).ok_or_else(|| {
        ApiError::invalid(
            Some("status".into()),
            "must be pending, delivered, failed or dead",
        )
    })?;
    let data = state
        .app
        .notifications(status)
        .await?
        .iter()
        .map(|n| NotificationBody {
            id: n.id.clone(),
            topic: n.topic.clone(),
            status: n.status.as_str().to_owned(),
            attempts: n.attempts,
            last_error: n.last_error.clone(),
            created: n.created_at,
        })
        .collect();
    Ok(Json(NotificationList {
        object: "list",
        data,
    }))
}

/// `POST /v1/admin/notifications/{id}/replay`: a failed or dead notification is due again.
#[utoipa::path(
    post,
    path = "/v1/admin/notifications/{id}/replay",
    tag = "admin",
    request_body(content = crate::wire::NoFields, description = "optional: no body, or `{}`"),
    params(
        ("id" = String, Path, description = "the notification"),
    ),
    responses(
        (status = 200, description = "due again", body = crate::wire::ReplayedBody),
        (status = 404, description = "`not_found`", body = crate::error::ErrorBody),
        (status = 409, description = "`invalid_state`: neither failed nor dead", body = crate::error::ErrorBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn replay_notification(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiJsonOrEmpty(NoFields {}): ApiJsonOrEmpty<NoFields>,
) -> Result<Json<ReplayedBody>, ApiError> {
    state.app.replay_notification(&id).await?;
    Ok(Json(ReplayedBody {
        id,
        status: "pending".into(),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/admin/reconcile",
    tag = "admin",
    request_body(content = crate::wire::NoFields, description = "optional: no body, or `{}`"),
    responses(
        (status = 200, description = "what one reconciliation run found and repaired", body = crate::wire::ReconcileBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn reconcile(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiJsonOrEmpty(NoFields {}): ApiJsonOrEmpty<NoFields>,
) -> Result<Json<Value>, ApiError> {
    let report = state.app.reconcile(&Quietly).await?;
    Ok(Json(report_body(&report)))
}

/// `POST /v1/admin/check`: the invariants of docs/risks.md against the database and the provider.
#[utoipa::path(
    post,
    path = "/v1/admin/check",
    tag = "admin",
    request_body(content = crate::wire::NoFields, description = "optional: no body, or `{}`"),
    responses(
        (status = 200, description = "the invariants of docs/risks.md against the database and Stripe", body = crate::wire::CheckBody),
    ),
    security(("secret_key" = [])),
)]
pub(crate) async fn check(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiJsonOrEmpty(NoFields {}): ApiJsonOrEmpty<NoFields>,
) -> Result<Json<Value>, ApiError> {
    let report = state.app.check_invariants().await?;
    Ok(Json(check_body(&report)))
}

/// The check's report as JSON; `kassa check` prints the same fields.
pub fn check_body(report: &CheckReport) -> Value {
    serde_json::to_value(CheckBody {
        passed: report.passed(),
        payments_checked: report.payments_checked,
        provider_errors: report.provider_errors,
        violations: report
            .violations
            .iter()
            .map(|v| ViolationBody {
                invariant: v.invariant,
                ids: v.ids.clone(),
                what: v.what.clone(),
            })
            .collect(),
    })
    .unwrap_or(Value::Null)
}

/// The report as JSON; `kassa reconcile` prints the same fields.
pub fn report_body(report: &ReconcileReport) -> Value {
    serde_json::to_value(ReconcileBody {
        payments_checked: report.payments_checked,
        refunds_checked: report.refunds_checked,
        events_read: report.events_read,
        events_recovered: report.events_recovered,
        sellers_checked: report.sellers_checked,
        provider_errors: report.provider_errors,
        differences: report
            .differences
            .iter()
            .map(|(order_id, what)| DifferenceBody {
                order_id: order_id.clone(),
                what: what.clone(),
            })
            .collect(),
    })
    .unwrap_or(Value::Null)
}
