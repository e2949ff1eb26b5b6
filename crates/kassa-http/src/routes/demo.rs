//! The demo storefront, in sandbox mode only (`/demo/`; 404 otherwise): static pages embedded in
//! the binary that use the API as a shop's storefront would, and the hosted page's return page.
//!
//! Risk S4: the order token never reaches a URL, a `Referer` or browser storage. The pages keep
//! it in memory; every answer here says `Referrer-Policy: no-referrer` and a
//! Content-Security-Policy that runs only these files and talks only to Kassa and the emulator.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use kassa_app::AppError;
use kassa_domain::credits::SubscriptionStatus;
use serde::{Deserialize, Serialize};

use crate::HttpState;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::routes::docs::escape;

const INDEX: &str = include_str!("../../demo/index.html");
const SCRIPT: &str = include_str!("../../demo/app.js");
const STYLE: &str = include_str!("../../demo/style.css");

/// What the demo needs to know, given by `kassa serve` in sandbox mode.
pub struct DemoStorefront {
    /// Kassa's storefront key; the pages are a storefront.
    pub publishable_key: String,
    /// The emulator, which the pages' stand-in for Stripe.js talks to.
    pub stripe_api_base: String,
    pub stripe_publishable_key: String,
    pub catalog: Vec<DemoItem>,
}

/// One variant for sale on the demo's catalog.
#[derive(Clone, Serialize)]
pub struct DemoItem {
    pub name: String,
    pub sku: String,
    pub size: String,
    pub unit_amount: i64,
    pub currency: String,
}

#[derive(Serialize)]
struct DemoConfig<'a> {
    publishable_key: &'a str,
    stripe_api_base: &'a str,
    stripe_publishable_key: &'a str,
    catalog: &'a [DemoItem],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnQuery {
    session_id: String,
}

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(index))
        .route("/demo/app.js", get(script))
        .route("/demo/style.css", get(style))
        .route("/demo/config.json", get(config))
        .route("/demo/return", get(return_page))
}

fn demo(state: &HttpState) -> Result<&DemoStorefront, ApiError> {
    state
        .demo
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("the demo storefront is served in sandbox mode".into()))
}

/// Every answer of the demo: its own files only, the API and the emulator only, no referrer.
fn secured(demo: &DemoStorefront, content_type: &'static str, body: String) -> Response {
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' {}; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        demo.stripe_api_base
    );
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    match HeaderValue::from_str(&policy) {
        Ok(policy) => {
            headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        }
        // The router's default policy then applies, which runs nothing: the page stays inert.
        Err(_) => tracing::error!("the emulator's address cannot be written into the demo's CSP"),
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn index(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let demo = demo(&state)?;
    Ok(secured(demo, "text/html; charset=utf-8", INDEX.to_owned()))
}

async fn script(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let demo = demo(&state)?;
    Ok(secured(
        demo,
        "text/javascript; charset=utf-8",
        SCRIPT.to_owned(),
    ))
}

async fn style(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let demo = demo(&state)?;
    Ok(secured(demo, "text/css; charset=utf-8", STYLE.to_owned()))
}

async fn config(State(state): State<HttpState>) -> Result<Response, ApiError> {
    let demo = demo(&state)?;
    let body = serde_json::to_string(&DemoConfig {
        publishable_key: &demo.publishable_key,
        stripe_api_base: &demo.stripe_api_base,
        stripe_publishable_key: &demo.stripe_publishable_key,
        catalog: &demo.catalog,
    })
    .map_err(|_| ApiError::Internal)?;
    Ok(secured(demo, "application/json", body))
}

/// The return page of a subscription's hosted page: its status, refreshed until the first
/// invoice's payment arrives.
async fn subscription_return_page(
    state: &HttpState,
    demo: &DemoStorefront,
    session_id: &str,
) -> Result<Response, ApiError> {
    let subscription = state
        .app
        .subscription_for_checkout_session(session_id)
        .await?;
    let refresh = if subscription.status == SubscriptionStatus::Incomplete {
        "<meta http-equiv=\"refresh\" content=\"1\">"
    } else {
        ""
    };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">{refresh}\
         <title>Your subscription</title><link rel=\"stylesheet\" href=\"/demo/style.css\"></head><body>\
         <h1>Thank you</h1>\
         <p>Subscription <code id=\"subscription-id\">{id}</code>: \
         <strong id=\"subscription-status\">{status}</strong></p>\
         <p><a id=\"back\" href=\"/demo/\">Back to the shop</a></p></body></html>",
        id = escape(&subscription.id),
        status = subscription.status,
    );
    Ok(secured(demo, "text/html; charset=utf-8", page))
}

/// Where the hosted page sends the customer back (`?session_id=`): the order's status, total
/// and lines, refreshed until the payment is settled. Nothing about the customer is shown.
async fn return_page(
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<ReturnQuery>,
) -> Result<Response, ApiError> {
    let demo = demo(&state)?;
    let order = match state
        .app
        .order_for_checkout_session(&query.session_id)
        .await
    {
        Ok(order) => order,
        Err(AppError::NotFound { .. }) => {
            return subscription_return_page(&state, demo, &query.session_id).await;
        }
        Err(error) => return Err(error.into()),
    };
    // A payment that failed (a bank transfer that did not arrive) is not waited for: the page
    // says so instead of refreshing until the janitor cancels the order.
    let failed = order.payment.as_ref().is_some_and(|payment| {
        payment.status == kassa_domain::payment::PaymentStatus::RequiresPaymentMethod
            && payment.last_error.is_some()
    });
    let waiting = !failed && matches!(order.status.as_str(), "pending_payment" | "requires_action");
    let refresh = if waiting {
        "<meta http-equiv=\"refresh\" content=\"1\">"
    } else {
        ""
    };
    let failure = if failed {
        "<p id=\"payment-failed\">The payment did not go through; nothing was charged.</p>"
    } else {
        ""
    };
    let mut lines = String::new();
    for line in &order.lines {
        let _ = write!(
            lines,
            "<tr><td>{} × {}</td><td class=\"amount\">{}</td></tr>",
            line.quantity,
            escape(&line.product_name),
            kassa_domain::Money::new(line.amount_minor, order.total.currency()),
        );
    }
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">{refresh}\
         <title>Your order</title><link rel=\"stylesheet\" href=\"/demo/style.css\"></head><body>\
         <h1>Thank you</h1>\
         <p>Order <code id=\"order-id\">{id}</code>: <strong id=\"order-status\">{status}</strong>, \
         <span id=\"order-total\">{total}</span></p>{failure}<table>{lines}</table>\
         <p><a id=\"back\" href=\"/demo/\">Back to the shop</a></p></body></html>",
        id = escape(&order.id),
        status = order.status.as_str(),
        total = order.total,
    );
    Ok(secured(demo, "text/html; charset=utf-8", page))
}
