//! Subscriptions in the emulator over real HTTP: started by paying a `mode=subscription`
//! Checkout Session, renewed as emulated time passes (paid, or failed and `past_due` until the
//! invoice is paid), canceled at once or at the period's end; Stripe's objects and events.

use kassa_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

mod common;

use common::Client;

const MONTH: i64 = 30 * 86_400;

async fn started() -> (Emulator, Client) {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("starts");
    let client = Client::new(&emulator);
    (emulator, client)
}

/// A subscription of 900 eur-cents a month paid with `pm_card_visa`: (session, subscription).
async fn subscribed(client: &Client) -> (Value, Value) {
    let (status, session, _) = client
        .post(
            "/v1/checkout/sessions",
            &[
                ("mode", "subscription"),
                ("success_url", "http://shop.test/done"),
                ("customer_email", "ada@example.com"),
                ("subscription_data[metadata][kassa_plan_id]", "plan_1"),
                ("line_items[0][price_data][currency]", "eur"),
                ("line_items[0][price_data][unit_amount]", "900"),
                ("line_items[0][price_data][recurring][interval]", "month"),
                ("line_items[0][price_data][product_data][name]", "Pro"),
                ("line_items[0][quantity]", "1"),
            ],
            None,
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let id = session["id"].as_str().expect("id");
    let paid = client
        .control(
            &format!("/_emulator/checkout_sessions/{id}/pay"),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    let subscription = client
        .get(&format!(
            "/v1/subscriptions/{}",
            paid["subscription"].as_str().expect("subscription")
        ))
        .await;
    (paid, subscription)
}

async fn types_since(client: &Client, count_before: usize) -> Vec<String> {
    let events = client.get("/v1/events?limit=100").await;
    let mut types: Vec<String> = events["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    types.reverse();
    types.split_off(count_before.min(types.len()))
}

async fn advance(client: &Client, seconds: i64) {
    client
        .control("/_emulator/clock/advance", json!({"seconds": seconds}))
        .await;
}

#[tokio::test]
async fn a_paid_subscription_page_starts_a_subscription_in_stripes_order() {
    let (emulator, client) = started().await;
    let (session, subscription) = subscribed(&client).await;
    assert_eq!(session["status"], "complete");
    assert_eq!(session["payment_status"], "paid");
    assert_eq!(subscription["status"], "active");
    assert_eq!(subscription["metadata"]["kassa_plan_id"], "plan_1");
    assert_eq!(subscription["customer"], session["customer"]);
    let item = &subscription["items"]["data"][0];
    assert_eq!(
        item["current_period_end"].as_i64().expect("end")
            - item["current_period_start"].as_i64().expect("start"),
        MONTH
    );
    let invoice = client
        .get(&format!(
            "/v1/invoices/{}",
            session["invoice"].as_str().expect("invoice")
        ))
        .await;
    assert_eq!(
        (invoice["status"].clone(), invoice["amount_paid"].clone()),
        (json!("paid"), json!(900))
    );
    assert_eq!(invoice["billing_reason"], "subscription_create");
    let customer = client
        .get(&format!(
            "/v1/customers/{}",
            session["customer"].as_str().expect("customer")
        ))
        .await;
    assert_eq!(customer["email"], "ada@example.com");
    assert_eq!(
        types_since(&client, 0).await,
        [
            "customer.created",
            "customer.subscription.created",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded",
            "checkout.session.completed"
        ]
    );
    for (name, ours) in [
        ("customer", &customer),
        ("subscription", &subscription),
        ("invoice", &invoice),
    ] {
        let theirs = common::stripe_example(name);
        let missing: Vec<&String> = theirs
            .as_object()
            .expect("fixture")
            .keys()
            .filter(|key| ours.get(key.as_str()).is_none())
            .collect();
        assert!(missing.is_empty(), "{name} lacks {missing:?}");
    }
    let theirs = common::stripe_example("invoice")["lines"]["data"][0].clone();
    let line = &invoice["lines"]["data"][0];
    let missing: Vec<&String> = theirs
        .as_object()
        .expect("fixture")
        .keys()
        .filter(|key| line.get(key.as_str()).is_none())
        .collect();
    assert!(missing.is_empty(), "the invoice's line lacks {missing:?}");
    assert_eq!(
        (
            line["parent"]["type"].clone(),
            line["pricing"]["unit_amount_decimal"].clone(),
            line["quantity"].clone(),
            invoice["amount_remaining"].clone()
        ),
        (
            json!("subscription_item_details"),
            json!("900"),
            json!(1),
            json!(0)
        )
    );
    emulator.shutdown().await;
}

/// What an operator does in Stripe's dashboard: a customer's balance pays part of the next
/// invoice (or all of it, charging no card), and a new price is billed from the next period.
/// Each invoice still bills the price on its line, paid in full (`amount_remaining` 0).
#[tokio::test]
async fn a_customers_balance_pays_part_of_an_invoice_and_a_new_price_is_billed_next() {
    let (emulator, client) = started().await;
    let (session, subscription) = subscribed(&client).await;
    let (customer, id) = (
        session["customer"].as_str().expect("customer"),
        subscription["id"].as_str().expect("id"),
    );
    client
        .control(
            &format!("/_emulator/customers/{customer}/balance"),
            json!({"balance": -300}),
        )
        .await;
    advance(&client, MONTH + 1).await;
    let latest = |subscription: &Value| subscription["latest_invoice"].as_str().map(str::to_owned);
    let invoice_of = async |client: &Client| {
        let subscription = client.get(&format!("/v1/subscriptions/{id}")).await;
        let invoice = latest(&subscription).expect("invoice");
        client.get(&format!("/v1/invoices/{invoice}")).await
    };
    let paid = invoice_of(&client).await;
    let amounts = |invoice: &Value| {
        [
            "status",
            "total",
            "starting_balance",
            "amount_paid",
            "amount_remaining",
        ]
        .map(|field| invoice[field].clone())
    };
    assert_eq!(
        amounts(&paid),
        [json!("paid"), json!(900), json!(-300), json!(600), json!(0)]
    );
    assert_eq!(
        paid["lines"]["data"][0]["pricing"]["unit_amount_decimal"],
        "900"
    );
    // A balance larger than the price pays the whole invoice, whatever the card.
    client
        .control(
            &format!("/_emulator/customers/{customer}/payment_method"),
            json!({"payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    client
        .control(
            &format!("/_emulator/customers/{customer}/balance"),
            json!({"balance": -1000}),
        )
        .await;
    advance(&client, MONTH).await;
    assert_eq!(
        amounts(&invoice_of(&client).await),
        [json!("paid"), json!(900), json!(-1000), json!(0), json!(0)]
    );
    assert_eq!(
        client.get(&format!("/v1/customers/{customer}")).await["balance"],
        -100
    );
    // The plan changed at Stripe: the next period bills the new price.
    client
        .control(
            &format!("/_emulator/customers/{customer}/payment_method"),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    let changed = client
        .control(
            &format!("/_emulator/subscriptions/{id}/price"),
            json!({"unit_amount": 1900}),
        )
        .await;
    assert_eq!(changed["items"]["data"][0]["price"]["unit_amount"], 1900);
    advance(&client, MONTH).await;
    let next = invoice_of(&client).await;
    assert_eq!(
        amounts(&next),
        [
            json!("paid"),
            json!(1900),
            json!(-100),
            json!(1800),
            json!(0)
        ]
    );
    assert_eq!(
        next["lines"]["data"][0]["pricing"]["price_details"]["price"],
        changed["items"]["data"][0]["price"]["id"]
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn renewals_are_paid_or_fail_to_past_due_until_the_invoice_is_paid() {
    let (emulator, client) = started().await;
    let (session, subscription) = subscribed(&client).await;
    let id = subscription["id"].as_str().expect("id");
    let before = types_since(&client, 0).await.len();
    advance(&client, MONTH + 1).await;
    assert_eq!(
        types_since(&client, before).await,
        [
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );
    // The card stops working: the next renewal fails, the subscription is past due.
    let customer = session["customer"].as_str().expect("customer");
    client
        .control(
            &format!("/_emulator/customers/{customer}/payment_method"),
            json!({"payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    let before = types_since(&client, 0).await.len();
    advance(&client, MONTH).await;
    assert_eq!(
        types_since(&client, before).await,
        [
            "invoice.created",
            "invoice.finalized",
            "invoice.payment_failed",
            "customer.subscription.updated"
        ]
    );
    let past_due = client.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(past_due["status"], "past_due");
    // A new card, and the open invoice paid: active again.
    client
        .control(
            &format!("/_emulator/customers/{customer}/payment_method"),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    let invoice = past_due["latest_invoice"].as_str().expect("invoice");
    let (status, paid, _) = client
        .post(&format!("/v1/invoices/{invoice}/pay"), &[], None)
        .await;
    assert_eq!((status, paid["status"].clone()), (200, json!("paid")));
    let active = client.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(active["status"], "active");
    emulator.shutdown().await;
}

#[tokio::test]
async fn subscriptions_end_at_once_or_at_the_period_end() {
    let (emulator, client) = started().await;
    let (_, first) = subscribed(&client).await;
    let (_, second) = subscribed(&client).await;
    let first = first["id"].as_str().expect("id");
    let second = second["id"].as_str().expect("id");
    let (status, updated, _) = client
        .post(
            &format!("/v1/subscriptions/{first}"),
            &[("cancel_at_period_end", "true")],
            None,
        )
        .await;
    assert_eq!(
        (status, updated["cancel_at_period_end"].clone()),
        (200, json!(true))
    );
    let response = client
        .http
        .delete(format!("{}/v1/subscriptions/{second}", client.base))
        .bearer_auth(&client.key)
        .send()
        .await
        .expect("answers");
    let canceled: Value = response.json().await.expect("json");
    assert_eq!(canceled["status"], "canceled");
    let before = types_since(&client, 0).await.len();
    advance(&client, MONTH + 1).await;
    assert_eq!(
        types_since(&client, before).await,
        ["customer.subscription.deleted"]
    );
    let ended = client.get(&format!("/v1/subscriptions/{first}")).await;
    assert_eq!(ended["status"], "canceled");
    emulator.shutdown().await;
}
