//! Checkout Sessions in the emulator over real HTTP: creation rules, the hosted page, each test
//! payment method, expiry, and the events Stripe sends for each.

use std::time::{Duration, Instant};

use kassa_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

mod common;

use common::Client;

const SUCCESS_URL: &str = "http://shop.test/done?session_id={CHECKOUT_SESSION_ID}";
const CANCEL_URL: &str = "http://shop.test/cart";

async fn started() -> (Emulator, Client) {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    (emulator, client)
}

/// A session for two lines (2 × 1250 + 1 × 500 = 3000 eur) that expires in an hour.
async fn session(client: &Client, extra: &[(&str, &str)]) -> (u16, Value) {
    let expires_at = (now(client).await + 3600).to_string();
    let mut form = vec![
        ("mode", "payment"),
        ("success_url", SUCCESS_URL),
        ("cancel_url", CANCEL_URL),
        ("client_reference_id", "ord_1"),
        ("metadata[kassa_order_id]", "ord_1"),
        ("payment_intent_data[metadata][kassa_payment_id]", "pay_1"),
        ("line_items[0][price_data][currency]", "eur"),
        ("line_items[0][price_data][unit_amount]", "1250"),
        (
            "line_items[0][price_data][product_data][name]",
            "Mug <blue>",
        ),
        ("line_items[0][quantity]", "2"),
        ("line_items[1][price_data][currency]", "eur"),
        ("line_items[1][price_data][unit_amount]", "500"),
        ("line_items[1][price_data][product_data][name]", "Spoon"),
        ("line_items[1][quantity]", "1"),
        ("expires_at", &expires_at),
    ];
    form.retain(|(name, _)| !extra.iter().any(|(e, _)| e == name));
    form.extend_from_slice(extra);
    let (status, body, _) = client.post("/v1/checkout/sessions", &form, None).await;
    (status, body)
}

async fn now(client: &Client) -> i64 {
    client.get("/_emulator/clock").await["now"]
        .as_i64()
        .expect("clock")
}

async fn pay(client: &Client, id: &str, method: &str) -> Value {
    client
        .control(
            &format!("/_emulator/checkout_sessions/{id}/pay"),
            json!({ "payment_method": method }),
        )
        .await
}

/// The types of the events about `object_id` (a session or an intent), oldest first.
async fn event_types(client: &Client, object_id: &str) -> Vec<String> {
    let events = client.get("/v1/events?limit=100").await;
    let mut types: Vec<String> = events["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|e| e["data"]["object"]["id"] == object_id)
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    types.reverse();
    types
}

/// Waits (bounded) until an event of `kind` about `object_id` is listed.
async fn wait_for_event(client: &Client, object_id: &str, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !event_types(client, object_id)
        .await
        .iter()
        .any(|t| t == kind)
    {
        assert!(Instant::now() < deadline, "no {kind} for {object_id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_session_is_created_from_price_data_with_stripes_keys() {
    let (emulator, client) = started().await;
    let (status, created) = session(&client, &[]).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id");
    assert!(id.starts_with("cs_test_"));
    assert_eq!(created["amount_total"], 3000);
    assert_eq!(created["currency"], "eur");
    assert_eq!(created["status"], "open");
    assert_eq!(created["payment_status"], "unpaid");
    assert_eq!(created["payment_intent"], Value::Null);
    assert_eq!(created["success_url"], SUCCESS_URL);
    assert_eq!(created["client_reference_id"], "ord_1");
    assert_eq!(created["metadata"]["kassa_order_id"], "ord_1");
    assert_eq!(
        created["url"],
        format!("{}/checkout/{id}", emulator.base_url())
    );
    let items = client
        .get(&format!("/v1/checkout/sessions/{id}/line_items"))
        .await;
    assert_eq!(items["data"][0]["quantity"], 2);
    assert_eq!(items["data"][0]["amount_total"], 2500);
    assert_eq!(items["data"][1]["description"], "Spoon");
    assert_eq!(
        client.get(&format!("/v1/checkout/sessions/{id}")).await,
        created
    );
    let theirs = common::stripe_example("checkout.session");
    let theirs = theirs.as_object().expect("fixture");
    let missing: Vec<&String> = theirs
        .keys()
        .filter(|key| created.get(key.as_str()).is_none())
        .collect();
    assert!(missing.is_empty(), "checkout.session lacks {missing:?}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn creation_is_refused_as_stripe_refuses_it() {
    let (emulator, client) = started().await;
    let soon = (now(&client).await + 60).to_string();
    let late = (now(&client).await + 2 * 86_400).to_string();
    for (extra, param) in [
        (vec![("expires_at", soon.as_str())], "expires_at"),
        (vec![("expires_at", late.as_str())], "expires_at"),
        (
            vec![("line_items[1][price_data][currency]", "usd")],
            "line_items[1][price_data][currency]",
        ),
        (vec![("mode", "setup")], "mode"),
        (
            vec![("payment_intent_data[capture_method]", "sometimes")],
            "payment_intent_data[capture_method]",
        ),
    ] {
        let (status, body) = session(&client, &extra).await;
        assert_eq!(status, 400, "{extra:?}: {body}");
        assert_eq!(body["error"]["param"], param, "{extra:?}");
    }
    let (status, body, _) = client
        .post("/v1/checkout/sessions", &[("mode", "payment")], None)
        .await;
    assert_eq!(
        (status, body["error"]["param"].clone()),
        (400, json!("success_url"))
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_card_payment_completes_the_session_after_the_intents_events() {
    let (emulator, client) = started().await;
    let (_, created) = session(&client, &[]).await;
    let id = created["id"].as_str().expect("id");
    let paid = pay(&client, id, "pm_card_visa").await;
    assert_eq!(paid["status"], "complete");
    assert_eq!(paid["payment_status"], "paid");
    let intent_id = paid["payment_intent"].as_str().expect("intent");
    let intent = client
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["amount"], 3000);
    assert_eq!(intent["metadata"]["kassa_payment_id"], "pay_1");
    assert_eq!(
        event_types(&client, intent_id).await,
        ["payment_intent.created", "payment_intent.succeeded"]
    );
    assert_eq!(
        event_types(&client, id).await,
        ["checkout.session.completed"]
    );
    let again = pay(&client, id, "pm_card_visa").await;
    assert_eq!(again["error"]["code"], "checkout_session_not_open");
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_declined_card_leaves_the_session_open_for_another_try() {
    let (emulator, client) = started().await;
    let (_, created) = session(&client, &[]).await;
    let id = created["id"].as_str().expect("id");
    let declined = pay(&client, id, "pm_card_chargeDeclined").await;
    assert_eq!(declined["error"]["code"], "card_declined");
    let open = client.get(&format!("/v1/checkout/sessions/{id}")).await;
    assert_eq!(open["status"], "open");
    let paid = pay(&client, id, "pm_card_visa").await;
    assert_eq!(paid["payment_status"], "paid");
    assert_eq!(
        paid["payment_intent"], open["payment_intent"],
        "one intent, retried"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn three_d_secure_completes_the_session_once_authenticated() {
    let (emulator, client) = started().await;
    let (_, created) = session(
        &client,
        &[("payment_intent_data[capture_method]", "manual")],
    )
    .await;
    let id = created["id"].as_str().expect("id");
    let pending = pay(&client, id, "pm_card_authenticationRequired").await;
    assert_eq!(pending["status"], "open");
    let intent_id = pending["payment_intent"].as_str().expect("intent");
    client
        .control(
            &format!("/_emulator/payment_intents/{intent_id}/authenticate"),
            json!({"outcome": "succeed"}),
        )
        .await;
    let session = client.get(&format!("/v1/checkout/sessions/{id}")).await;
    assert_eq!(session["status"], "complete");
    // Authorized, not captured: the money is not taken yet.
    assert_eq!(session["payment_status"], "unpaid");
    let intent = client
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(intent["status"], "requires_capture");
    emulator.shutdown().await;
}

#[tokio::test]
async fn delayed_payments_complete_unpaid_then_settle_or_fail() {
    let (emulator, client) = started().await;
    for (method, kind, intent_status) in [
        (
            "pm_bank_transfer_settles",
            "checkout.session.async_payment_succeeded",
            "succeeded",
        ),
        (
            "pm_bank_transfer_fails",
            "checkout.session.async_payment_failed",
            "requires_payment_method",
        ),
    ] {
        let (_, created) = session(&client, &[]).await;
        let id = created["id"].as_str().expect("id");
        let completed = pay(&client, id, method).await;
        assert_eq!(completed["status"], "complete", "{method}");
        assert_eq!(completed["payment_status"], "unpaid", "{method}");
        wait_for_event(&client, id, kind).await;
        assert_eq!(
            event_types(&client, id).await,
            ["checkout.session.completed", kind],
            "{method}"
        );
        let intent_id = completed["payment_intent"].as_str().expect("intent");
        let intent = client
            .get(&format!("/v1/payment_intents/{intent_id}"))
            .await;
        assert_eq!(intent["status"], intent_status, "{method}");
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_session_expires_on_request_or_when_its_time_runs_out() {
    let (emulator, client) = started().await;
    let (_, first) = session(&client, &[]).await;
    let first = first["id"].as_str().expect("id");
    // A declined attempt started an intent; expiring the session cancels it.
    pay(&client, first, "pm_card_chargeDeclined").await;
    let (status, expired, _) = client
        .post(&format!("/v1/checkout/sessions/{first}/expire"), &[], None)
        .await;
    assert_eq!((status, expired["status"].clone()), (200, json!("expired")));
    let intent_id = expired["payment_intent"].as_str().expect("intent");
    let intent = client
        .get(&format!("/v1/payment_intents/{intent_id}"))
        .await;
    assert_eq!(intent["status"], "canceled");
    let (status, _, _) = client
        .post(&format!("/v1/checkout/sessions/{first}/expire"), &[], None)
        .await;
    assert_eq!(status, 400, "an expired session cannot expire again");
    assert_eq!(
        pay(&client, first, "pm_card_visa").await["error"]["code"],
        "checkout_session_not_open"
    );

    let (_, second) = session(&client, &[]).await;
    let second = second["id"].as_str().expect("id");
    client
        .control("/_emulator/clock/advance", json!({"seconds": 3601}))
        .await;
    let expired = client.get(&format!("/v1/checkout/sessions/{second}")).await;
    assert_eq!(expired["status"], "expired");
    assert_eq!(
        event_types(&client, second).await,
        ["checkout.session.expired"]
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_hosted_page_takes_a_payment_and_sends_the_customer_back() {
    let (emulator, client) = started().await;
    let (_, created) = session(&client, &[]).await;
    let id = created["id"].as_str().expect("id");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = browser
        .get(created["url"].as_str().expect("url"))
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.headers().contains_key("content-security-policy"));
    let html = page.text().await.expect("text");
    assert!(html.contains("30.00 EUR"), "{html}");
    assert!(
        html.contains("Mug &lt;blue&gt;"),
        "names are escaped: {html}"
    );
    assert!(html.contains(&format!("href=\"{CANCEL_URL}\"")));

    let pay_url = format!("{}/checkout/{id}/pay", emulator.base_url());
    let declined = browser
        .post(&pay_url)
        .form(&[("payment_method", "pm_card_chargeDeclined")])
        .send()
        .await
        .expect("answers");
    assert_eq!(declined.status(), 303);
    assert_eq!(declined.headers()["location"], format!("/checkout/{id}"));
    let again = browser
        .get(created["url"].as_str().expect("url"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert!(again.contains("id=\"error\""), "{again}");

    let paid = browser
        .post(&pay_url)
        .form(&[("payment_method", "pm_card_visa")])
        .send()
        .await
        .expect("answers");
    assert_eq!(paid.status(), 303);
    assert_eq!(
        paid.headers()["location"],
        format!("http://shop.test/done?session_id={id}")
    );
    emulator.shutdown().await;
}

/// After emulated time moved on (a month of renewals in a sandbox), a caller on the wall clock
/// still creates sessions: its `expires_at` is carried into emulated time, as Stripe's test
/// clocks never move Checkout Sessions.
#[tokio::test]
async fn sessions_are_created_after_emulated_time_moved_a_month() {
    let (_emulator, client) = started().await;
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    client
        .control("/_emulator/clock/advance", json!({"seconds": 30 * 86_400}))
        .await;
    let asked = (real_now + 2400).to_string();
    let (status, created) = session(&client, &[("expires_at", &asked)]).await;
    assert_eq!(status, 200, "{created}");
    let expires_at = created["expires_at"].as_i64().expect("expires_at");
    let emulated_now = now(&client).await;
    assert!(
        (emulated_now + 1800..=emulated_now + 2400).contains(&expires_at),
        "{expires_at} vs {emulated_now}"
    );
    let (status, _) = session(&client, &[("expires_at", &(real_now + 60).to_string())]).await;
    assert_eq!(status, 400, "still too soon on either clock");
}
