//! Orders: `GET /v1/orders/{id}` for the operator (secret key) or the customer (order token as
//! the Bearer credential, never in the URL), and the audit trail for the operator.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::HttpState;
use crate::auth::{OrderReader, SecretKey};
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::wire::{AuditEventBody, OrderBody};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/v1/orders/{id}", get(order))
        .route("/v1/orders/{id}/events", get(events))
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

async fn order(
    reader: OrderReader,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderBody>, ApiError> {
    match reader {
        OrderReader::Operator => Ok(Json(OrderBody::full(&state.app.order(&id).await?))),
        OrderReader::Customer { token } => {
            let view = state
                .app
                .order_for_customer(&id, &token)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            Ok(Json(OrderBody::for_customer(&view.order, view.can_modify)))
        }
    }
}

async fn events(
    _: SecretKey,
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let events: Vec<AuditEventBody> = state
        .app
        .order_events(&id)
        .await?
        .iter()
        .map(AuditEventBody::from)
        .collect();
    Ok(Json(
        serde_json::json!({ "object": "list", "data": events }),
    ))
}
