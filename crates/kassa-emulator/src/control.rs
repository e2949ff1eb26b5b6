//! The control API under `/_emulator/` (secret key): what tests and the sandbox need that
//! Stripe's API has no call for — webhook endpoints, simulated 3-D Secure, disputes, time,
//! what an operator does in Stripe's dashboard (a customer's balance, a subscription's price),
//! and fault injection. JSON in and out.

use std::collections::VecDeque;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::http::{Caller, Form, Shared, answer, authenticate, parse_form};
use crate::world::{ApiFault, WebhookFaults, invalid};

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/_emulator/webhook_endpoints", post(add_endpoint))
        .route("/_emulator/webhook_deliveries", get(deliveries))
        .route(
            "/_emulator/payment_intents/{id}/authenticate",
            post(authenticate_intent),
        )
        .route(
            "/_emulator/payment_intents/{id}/dispute",
            post(open_dispute),
        )
        .route("/_emulator/disputes/{id}/close", post(close_dispute))
        .route("/_emulator/checkout_sessions/{id}/pay", post(pay_session))
        .route(
            "/_emulator/customers/{id}/payment_method",
            post(set_customer_payment_method),
        )
        .route(
            "/_emulator/customers/{id}/balance",
            post(set_customer_balance),
        )
        .route(
            "/_emulator/subscriptions/{id}/price",
            post(set_subscription_price),
        )
        .route("/_emulator/accounts/{id}", post(set_account_readiness))
        .route("/_emulator/clock", get(clock))
        .route("/_emulator/settle", post(settle_now))
        .route("/_emulator/clock/advance", post(advance))
        .route("/_emulator/faults", post(set_faults).delete(clear_faults))
        .route("/_emulator/requests", get(requests))
}

/// How many calls of Stripe's API the emulator has received, in all and by endpoint.
async fn requests(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(response) = guard(&shared, &headers, &Bytes::new()) {
        return response;
    }
    let world = shared.world();
    let total: u64 = world.requests.values().sum();
    respond(Ok(json!({ "total": total, "by_endpoint": world.requests })))
}

/// Secret key and a JSON body (an empty body is `{}`).
fn guard(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
    match authenticate(shared, headers, &Form::new()) {
        Ok(Caller::Secret) => {}
        Ok(Caller::Publishable) => {
            return Err(answer(
                401,
                json!({"error": {"message": "secret key required"}}),
                false,
            ));
        }
        Err(response) => return Err(response),
    }
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|_| {
        answer(
            400,
            json!({"error": {"message": "body must be JSON"}}),
            false,
        )
    })
}

/// The `payment_method` of a control call's JSON body (secret key).
fn payment_method(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<String, Response> {
    let body = guard(shared, headers, body)?;
    body["payment_method"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            respond(Err(invalid(
                "parameter_missing",
                "payment_method is required",
                Some("payment_method"),
            )))
        })
}

fn respond(outcome: Result<Value, (u16, Value)>) -> Response {
    match outcome {
        Ok(body) => answer(200, body, false),
        Err((status, body)) => answer(status, body, false),
    }
}

async fn add_endpoint(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match guard(&shared, &headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(url) = body["url"].as_str() else {
        return respond(Err(invalid(
            "parameter_missing",
            "url is required",
            Some("url"),
        )));
    };
    shared.world().endpoints.push(url.to_owned());
    respond(Ok(json!({ "url": url })))
}

async fn deliveries(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(response) = guard(&shared, &headers, &Bytes::new()) {
        return response;
    }
    let data = shared.world().deliveries.clone();
    respond(Ok(json!({ "data": data })))
}

/// Finishes simulated 3-D Secure: with the secret key (JSON), or as Stripe.js does in the
/// customer's browser, form-encoded with the publishable key and the intent's client secret.
async fn authenticate_intent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    if let Ok(Caller::Publishable) = authenticate(&shared, &headers, &form) {
        let mut world = shared.world();
        let matches = world.intent(&id).is_ok_and(|intent| {
            form.get("client_secret").map(String::as_str) == intent["client_secret"].as_str()
        });
        if !matches {
            return respond(Err(invalid(
                "parameter_invalid",
                "The client_secret provided does not match this PaymentIntent.",
                Some("client_secret"),
            )));
        }
        let succeed = form.get("outcome").map(String::as_str) == Some("succeed");
        return respond(world.authenticate(&id, succeed));
    }
    let body = match guard(&shared, &headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let succeed = body["outcome"].as_str().unwrap_or("succeed") == "succeed";
    respond(shared.world().authenticate(&id, succeed))
}

/// Pays a session as a customer on the hosted page would: the session (200), or the decline
/// (402) after which the session stays open.
async fn pay_session(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match payment_method(&shared, &headers, &body) {
        Ok(method) => respond(shared.world().pay_session(&id, &method)),
        Err(response) => response,
    }
}

/// A connected account's onboarding finished (or its capabilities were taken away):
/// `{"charges_enabled": bool, "payouts_enabled": bool}`, either may be left out.
async fn set_account_readiness(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match guard(&shared, &headers, &body) {
        Ok(body) => respond(shared.world().set_account_readiness(
            &id,
            body["charges_enabled"].as_bool(),
            body["payouts_enabled"].as_bool(),
        )),
        Err(response) => response,
    }
}

/// The customer's card for renewals changes, as a customer updating their card would.
async fn set_customer_payment_method(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match payment_method(&shared, &headers, &body) {
        Ok(method) => respond(shared.world().set_customer_payment_method(&id, &method)),
        Err(response) => response,
    }
}

/// The integer `field` of a control call's JSON body (secret key).
fn integer_field(
    shared: &Shared,
    headers: &HeaderMap,
    body: &Bytes,
    field: &str,
) -> Result<i64, Response> {
    let body = guard(shared, headers, body)?;
    body[field].as_i64().ok_or_else(|| {
        respond(Err(invalid(
            "parameter_invalid",
            &format!("{field} must be an integer"),
            Some(field),
        )))
    })
}

/// `{"balance": -300}`: credit (negative) or debt the customer's next invoices take up first.
async fn set_customer_balance(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match integer_field(&shared, &headers, &body, "balance") {
        Ok(balance) => respond(shared.world().set_customer_balance(&id, balance)),
        Err(response) => response,
    }
}

/// `{"unit_amount": 1900}`: the subscription's next invoices bill a new price of that amount.
async fn set_subscription_price(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match integer_field(&shared, &headers, &body, "unit_amount") {
        Ok(amount) if amount >= 0 => respond(shared.world().set_subscription_price(&id, amount)),
        Ok(_) => respond(Err(invalid(
            "parameter_invalid",
            "unit_amount must not be negative",
            Some("unit_amount"),
        ))),
        Err(response) => response,
    }
}

async fn open_dispute(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = guard(&shared, &headers, &body) {
        return response;
    }
    respond(shared.world().open_dispute(&id))
}

async fn close_dispute(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match guard(&shared, &headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let won = body["outcome"].as_str().unwrap_or("won") == "won";
    respond(shared.world().close_dispute(&id, won))
}

/// Settles now what Stripe settles "a moment later" (a `pm_card_refundFail` refund failing, a
/// delayed payment method settling), so a test that wants the final state asks for it instead
/// of sleeping past the delays.
async fn settle_now(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = guard(&shared, &headers, &body) {
        return response;
    }
    let mut world = shared.world();
    let later = std::time::Instant::now()
        + crate::world::REFUND_FAILURE_DELAY
        + crate::sessions::DELAYED_PAYMENT_DELAY;
    world.fail_due_refunds(later);
    world.settle_delayed_payments(later);
    respond(Ok(json!({ "settled": true })))
}

async fn clock(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(response) = guard(&shared, &headers, &Bytes::new()) {
        return response;
    }
    let now = shared.world().now();
    respond(Ok(json!({ "now": now })))
}

async fn advance(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match guard(&shared, &headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(seconds) = body["seconds"].as_i64().filter(|s| *s >= 0) else {
        return respond(Err(invalid(
            "parameter_invalid",
            "seconds must be a non-negative integer",
            Some("seconds"),
        )));
    };
    let mut world = shared.world();
    world.advance(seconds);
    respond(Ok(json!({ "now": world.now() })))
}

/// `{"api": [{"endpoint": "POST /v1/payment_intents", "answers": [{"status": 500}, {"hang_ms": 100}, "lose_response"]}],
///   "webhooks": {"copies": 2, "reorder": true, "delay_ms": 0, "drop_first": false, "drop": false}}`
///   — both parts optional.
async fn set_faults(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match guard(&shared, &headers, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut api = Vec::new();
    for rule in body["api"].as_array().cloned().unwrap_or_default() {
        let Some(endpoint) = rule["endpoint"].as_str() else {
            return respond(Err(invalid(
                "parameter_missing",
                "each api fault needs an endpoint",
                Some("endpoint"),
            )));
        };
        let mut answers = VecDeque::new();
        for item in rule["answers"].as_array().cloned().unwrap_or_default() {
            let fault = match (&item, item["status"].as_u64(), item["hang_ms"].as_u64()) {
                (Value::String(text), _, _) if text == "lose_response" => ApiFault::LoseResponse,
                (_, Some(status), _) => ApiFault::Status(u16::try_from(status).unwrap_or(500)),
                (_, _, Some(ms)) => ApiFault::Hang(ms),
                _ => {
                    return respond(Err(invalid(
                        "parameter_invalid",
                        "unknown fault answer",
                        Some("answers"),
                    )));
                }
            };
            answers.push_back(fault);
        }
        api.push((endpoint.to_owned(), answers));
    }
    let hooks = &body["webhooks"];
    let webhooks = WebhookFaults {
        copies: u32::try_from(hooks["copies"].as_u64().unwrap_or(1))
            .unwrap_or(1)
            .clamp(1, 20),
        reorder: hooks["reorder"].as_bool().unwrap_or(false),
        delay_ms: hooks["delay_ms"].as_u64().unwrap_or(0).min(60_000),
        drop_first: hooks["drop_first"].as_bool().unwrap_or(false),
        drop: hooks["drop"].as_bool().unwrap_or(false),
    };
    let mut world = shared.world();
    world.api_faults.extend(api);
    world.webhook_faults = webhooks;
    respond(Ok(json!({ "ok": true })))
}

async fn clear_faults(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(response) = guard(&shared, &headers, &Bytes::new()) {
        return response;
    }
    let mut world = shared.world();
    world.api_faults.clear();
    world.webhook_faults = WebhookFaults {
        copies: 1,
        ..WebhookFaults::default()
    };
    respond(Ok(json!({ "ok": true })))
}
