//! The hosted payment page of a Checkout Session, as a customer's browser meets it: plain HTML
//! with the lines, the amount and a choice of test payment methods; 3-D Secure as a second step;
//! back to the shop's success or cancel URL. The session id in the path is the only credential,
//! as on Stripe's page. No script runs; nothing is stored in the browser.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::currency::display;
use crate::http::{Shared, parse_form};
use crate::sessions::{DELAYED_FAILS_METHOD, DELAYED_SETTLES_METHOD};

/// The choices the page offers, in order.
const METHODS: &[(&str, &str)] = &[
    ("pm_card_visa", "Card that succeeds (4242 4242 4242 4242)"),
    ("pm_card_chargeDeclined", "Card that is declined"),
    (
        "pm_card_authenticationRequired",
        "Card that asks for 3-D Secure",
    ),
    (DELAYED_SETTLES_METHOD, "Bank transfer that settles later"),
    (DELAYED_FAILS_METHOD, "Bank transfer that fails later"),
];

const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

pub fn router() -> Router<Shared> {
    Router::new()
        .route("/checkout/{id}", get(show))
        .route("/checkout/{id}/pay", post(pay))
        .route("/checkout/{id}/authenticate", post(authenticate))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Every answer of the page: no referrer leaves it, nothing is cached, nothing but its own
/// inline style runs.
fn secured(status: StatusCode, response: impl IntoResponse) -> Response {
    let mut response = (status, response).into_response();
    let headers = response.headers_mut();
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => {
            let mut response = secured(StatusCode::SEE_OTHER, ());
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => message_page(
            StatusCode::BAD_GATEWAY,
            "The shop's return URL is not valid.",
        ),
    }
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}\
         table{{width:100%;border-collapse:collapse}}td{{padding:.25rem 0}}\
         .amount{{text-align:right}}#error{{color:#b00}}label{{display:block;margin:.4rem 0}}\
         button{{margin-top:1rem;padding:.5rem 1rem}}</style></head>\
         <body><p><small>Kassa's Stripe emulator: a test payment page</small></p>{body}</body></html>",
        title = escape(title),
    )
}

fn message_page(status: StatusCode, message: &str) -> Response {
    let body = format!("<h1 id=\"message\">{}</h1>", escape(message));
    secured(status, Html(layout("Checkout", &body)))
}

/// Where the customer goes once the session is complete: the success URL with the session id
/// in place of Stripe's `{CHECKOUT_SESSION_ID}` placeholder.
fn success_url(session: &Value) -> String {
    let id = session["id"].as_str().unwrap_or_default();
    session["success_url"]
        .as_str()
        .unwrap_or_default()
        .replace("{CHECKOUT_SESSION_ID}", id)
}

async fn show(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let world = shared.world();
    let (session, lines) = match (world.session(&id), world.session_line_items(&id)) {
        (Ok(session), Ok(lines)) => (session, lines),
        _ => return message_page(StatusCode::NOT_FOUND, "This checkout page does not exist."),
    };
    let intent = session["payment_intent"]
        .as_str()
        .and_then(|intent_id| world.intent(intent_id).ok());
    drop(world);
    let now_expired = session["status"] == "expired";
    if now_expired {
        return message_page(StatusCode::GONE, "This checkout page has expired.");
    }
    if session["status"] == "complete" {
        return message_page(StatusCode::OK, "This checkout is complete.");
    }
    let currency = session["currency"].as_str().unwrap_or_default();
    let rows: String = lines
        .iter()
        .map(|line| {
            format!(
                "<tr><td>{} × {}</td><td class=\"amount\">{}</td></tr>",
                line["quantity"],
                escape(line["description"].as_str().unwrap_or_default()),
                display(currency, line["amount_total"].as_i64().unwrap_or(0)),
            )
        })
        .collect();
    let total = display(currency, session["amount_total"].as_i64().unwrap_or(0));
    let cancel = session["cancel_url"]
        .as_str()
        .map(|url| {
            format!(
                "<p><a id=\"cancel\" href=\"{}\">Back to the shop</a></p>",
                escape(url)
            )
        })
        .unwrap_or_default();
    let error = intent
        .as_ref()
        .and_then(|intent| intent["last_payment_error"]["message"].as_str())
        .map(|message| format!("<p id=\"error\">{}</p>", escape(message)))
        .unwrap_or_default();
    let id = escape(&id);
    let step = if intent
        .as_ref()
        .is_some_and(|intent| intent["status"] == "requires_action")
    {
        format!(
            "<h2>3-D Secure</h2><p>Your bank asks you to confirm this payment.</p>\
             <form method=\"post\" action=\"/checkout/{id}/authenticate\">\
             <button id=\"authenticate-succeed\" name=\"outcome\" value=\"succeed\">Complete authentication</button> \
             <button id=\"authenticate-fail\" name=\"outcome\" value=\"fail\">Fail authentication</button></form>"
        )
    } else {
        let choices: String = METHODS
            .iter()
            .enumerate()
            .map(|(index, (method, label))| {
                let checked = if index == 0 { " checked" } else { "" };
                format!(
                    "<label><input type=\"radio\" name=\"payment_method\" id=\"{method}\" \
                     value=\"{method}\"{checked}> {label}</label>"
                )
            })
            .collect();
        format!(
            "<form method=\"post\" action=\"/checkout/{id}/pay\">{choices}\
             <button id=\"pay\" type=\"submit\">Pay {total}</button></form>"
        )
    };
    let body = format!(
        "<h1>Pay <span id=\"amount\">{total}</span></h1><table>{rows}</table>{error}{step}{cancel}"
    );
    secured(StatusCode::OK, Html(layout("Checkout", &body)))
}

/// The customer chose a method and pressed Pay.
async fn pay(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let method = form.get("payment_method").cloned().unwrap_or_default();
    let outcome = shared.world().pay_session(&id, &method);
    after_attempt(&id, outcome)
}

/// The customer finished (or failed) the 3-D Secure step.
async fn authenticate(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let succeed = form.get("outcome").map(String::as_str) == Some("succeed");
    let outcome = {
        let mut world = shared.world();
        let intent_id = world
            .session(&id)
            .ok()
            .and_then(|session| session["payment_intent"].as_str().map(str::to_owned));
        match intent_id {
            Some(intent_id) => world
                .authenticate(&intent_id, succeed)
                .and_then(|_| world.session(&id)),
            None => world.session(&id),
        }
    };
    after_attempt(&id, outcome)
}

/// Complete: back to the shop. Still open (declined, or 3-D Secure to do): the page again,
/// which shows why. Anything else: the reason.
fn after_attempt(id: &str, outcome: Result<Value, (u16, Value)>) -> Response {
    match outcome {
        Ok(session) if session["status"] == "complete" => redirect(&success_url(&session)),
        Ok(_) | Err((402, _)) => redirect(&format!("/checkout/{id}")),
        Err((_, body)) => message_page(
            StatusCode::BAD_REQUEST,
            body["error"]["message"]
                .as_str()
                .unwrap_or("This payment cannot be made."),
        ),
    }
}
