//! Kassa's HTTP edge: the axum router of API.md, auth extractors, rate limits, strict JSON and
//! the one error type.
//!
//! Handlers extract, call one `App` method and map the result; there is no SQL and no Stripe
//! client here. This crate never touches sqlx or the Stripe adapter.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use kassa_app::App;
use kassa_domain::limits::REQUEST_BODY_MAX_BYTES;
use tower_http::catch_panic::CatchPanicLayer;

pub mod auth;
pub mod client_addr;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod notify;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod wire;

pub use auth::ApiKeys;
pub use client_addr::TrustedProxies;
pub use rate_limit::PublicRateLimit;
pub use routes::checkout::JsonCheckoutRenderer;
pub use routes::demo::{DemoItem, DemoStorefront};
pub use server::{ServerLimits, serve};
pub use wire::SandboxBody;

/// What every handler can reach.
#[derive(Clone)]
pub struct HttpState {
    pub app: App,
    pub keys: ApiKeys,
    /// `None` when rate limiting is off (`KASSA_RATE_LIMIT=0`).
    pub rate_limit: Option<Arc<PublicRateLimit>>,
    /// Whose forwarding headers name the client (`KASSA_TRUSTED_PROXIES`); none by default.
    pub trusted_proxies: TrustedProxies,
    /// Set only in sandbox mode.
    pub sandbox: Option<Arc<SandboxBody>>,
    /// Protocol limits; the body-read time limit is applied by the body extractors.
    pub limits: ServerLimits,
    /// Renders the process's metrics in Prometheus text; `None`: `/metrics` answers 404.
    pub metrics: Option<MetricsRender>,
    /// The demo storefront; set only in sandbox mode (`/demo/` answers 404 otherwise).
    pub demo: Option<Arc<routes::demo::DemoStorefront>>,
}

/// Renders the metrics recorder's current values (the binary installs the recorder).
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// The whole API. [`serve`] runs it with the protocol limits and gives the rate limiter each
/// client's address.
pub fn router(state: HttpState) -> Router {
    let public = routes::carts::router()
        .merge(routes::checkout::router())
        .merge(routes::orders::router())
        .merge(routes::subscriptions::storefront_router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit_public,
        ));
    // Stripe's deliveries are outside the public limit: a correctly signed one is never refused
    // for load others caused; the ones that fail verification have a budget of their own.
    let stripe = routes::webhooks::stripe_router().layer(DefaultBodyLimit::max(
        routes::webhooks::WEBHOOK_BODY_MAX_BYTES,
    ));
    // Outside sandbox mode no /demo route exists: every such path is the API's 404.
    let demo = if state.demo.is_some() {
        routes::demo::router()
    } else {
        Router::new()
    };
    Router::new()
        .merge(routes::catalog::router())
        .merge(public)
        .merge(stripe)
        .merge(routes::health::router())
        .merge(routes::docs::router())
        .merge(routes::sandbox::router())
        .merge(routes::webhooks::router())
        .merge(routes::refunds::router())
        .merge(routes::subscriptions::router())
        .merge(routes::sellers::router())
        .merge(routes::admin::router())
        .merge(demo)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(REQUEST_BODY_MAX_BYTES))
        .layer(CatchPanicLayer::custom(middleware::panic_answer))
        .layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(axum::middleware::from_fn(middleware::with_request_id))
        .layer(axum::middleware::from_fn(
            middleware::no_referrer_no_framing,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.trusted_proxies.clone(),
            client_addr::resolve_client,
        ))
        .with_state(state)
}

async fn not_found() -> impl IntoResponse {
    let error = error::ApiError::NotFound("no such endpoint".into());
    (StatusCode::NOT_FOUND, error).into_response()
}
