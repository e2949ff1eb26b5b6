//! Liveness and readiness probes (no auth: they reveal nothing), and `/metrics` in Prometheus
//! text for the operator's scraper (counts and timings only: no ids, no personal data).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use axum::response::IntoResponse;

use crate::HttpState;
use crate::error::ApiError;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn metrics(State(state): State<HttpState>) -> Result<axum::response::Response, ApiError> {
    let Some(render) = state.metrics.clone() else {
        return Err(ApiError::NotFound("metrics are not enabled".into()));
    };
    state.app.record_gauges().await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        render(),
    )
        .into_response())
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when the database answers and every migration is applied, else 503.
async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    if state.app.ready().await {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready" })),
        )
    }
}
