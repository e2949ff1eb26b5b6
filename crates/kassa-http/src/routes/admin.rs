//! Operator actions over HTTP (secret key): `POST /v1/admin/reconcile` runs one reconciliation
//! and answers what it found.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use kassa_app::reconcile::{Quietly, ReconcileReport};
use serde_json::{Value, json};

use crate::HttpState;
use crate::auth::SecretKey;
use crate::error::ApiError;

pub fn router() -> Router<HttpState> {
    Router::new().route("/v1/admin/reconcile", post(reconcile))
}

async fn reconcile(_: SecretKey, State(state): State<HttpState>) -> Result<Json<Value>, ApiError> {
    let report = state.app.reconcile(&Quietly).await?;
    Ok(Json(report_body(&report)))
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
