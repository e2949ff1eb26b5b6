//! Liveness and readiness probes (no auth: they reveal nothing), and `/metrics` in Prometheus
//! text for the operator's scraper (counts and timings only: no ids, no personal data).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use axum::response::IntoResponse;

use crate::HttpState;
use crate::error::ApiError;
use crate::wire::ProbeBody;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text: counts and timings, no ids, no personal data", content_type = "text/plain"),
        (status = 404, description = "`not_found`: metrics are not enabled", body = crate::error::ErrorBody),
    ),
)]
pub(crate) async fn metrics(
    State(state): State<HttpState>,
) -> Result<axum::response::Response, ApiError> {
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

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "alive", body = crate::wire::ProbeBody),
    ),
)]
pub(crate) async fn healthz() -> Json<ProbeBody> {
    Json(ProbeBody { status: "ok" })
}

/// 200 when the database answers and every migration is applied, else 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "the database answers and its schema is current", body = crate::wire::ProbeBody),
        (status = 503, description = "not ready", body = crate::wire::ProbeBody),
    ),
)]
pub(crate) async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<ProbeBody>) {
    if state.app.ready().await {
        (StatusCode::OK, Json(ProbeBody { status: "ready" }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ProbeBody {
                status: "not_ready",
            }),
        )
    }
}
