//! The checkout saga with the real Stripe adapter against the emulator, on both backends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_app::checkout::CheckoutInput;
use kassa_app::ports::{Actor, ShippingAddress};
use kassa_app::{App, AppError};
use kassa_emulator::{Emulator, EmulatorConfig};
use kassa_stripe::{StripeClient, StripeConfig};
use kassa_testkit::{TestDb, app_with, both_backends};
use serde_json::{Value, json};

async fn control(emulator: &Emulator, method: reqwest::Method, path: &str, body: Value) -> Value {
    reqwest::Client::new()
        .request(method, format!("{}{path}", emulator.base_url()))
        .bearer_auth(&emulator.config().secret_key)
        .json(&body)
        .send()
        .await
        .expect("emulator answers")
        .json()
        .await
        .expect("json")
}

async fn shop(db: &TestDb, emulator: &Emulator) -> App {
    let mut config = StripeConfig::new(&emulator.base_url(), &emulator.config().secret_key);
    config.request_timeout = Duration::from_millis(500);
    config.attempts_max = 2;
    config.backoff_base = Duration::from_millis(10);
    let app = app_with(db, Arc::new(StripeClient::new(config).expect("client")));
    kassa_testkit::seed_product(&app, "Mug", "MUG", 1250, "eur", 5).await;
    app
}

fn input(cart_id: &str) -> CheckoutInput {
    CheckoutInput {
        cart_id: cart_id.to_owned(),
        key_scope: "publishable".into(),
        idempotency_key: Some("k".into()),
        email: "ada@example.com".into(),
        shipping: ShippingAddress {
            name: "Ada".into(),
            line1: "1 St".into(),
            city: "London".into(),
            postal_code: "N1".into(),
            country: "GB".into(),
        },
        expected_total_minor: 1250,
        flow: kassa_app::checkout::CheckoutFlow::Embedded,
        actor: Actor {
            kind: "test".into(),
            request_id: None,
            client_ip: None,
        },
    }
}

async fn risk_g7_hanging_stripe_gives_the_customer_503_within_the_timeout(db: TestDb) {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("emulator");
    let app = shop(&db, &emulator).await;
    let cart = app.create_cart("eur").await.expect("cart");
    app.add_cart_line(&cart.id, "MUG", 1).await.expect("line");
    let hang = json!({"api": [{"endpoint": "POST /v1/payment_intents", "answers": [{"hang_ms": 0}, {"hang_ms": 0}]}]});
    control(&emulator, reqwest::Method::POST, "/_emulator/faults", hang).await;

    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), app.checkout(input(&cart.id)))
        .await
        .expect("the checkout must give up by itself");
    assert!(
        matches!(outcome, Err(AppError::ProviderUnavailable { .. })),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    // The database is free and the order waits at its recovery point with its stock held.
    let stock = app.inventory("MUG").await.expect("inventory")[0].stock;
    assert_eq!((stock.available(), stock.reserved), (4, 1));

    // Stripe recovers; the customer's retry with the same key completes the same order.
    control(
        &emulator,
        reqwest::Method::DELETE,
        "/_emulator/faults",
        json!({}),
    )
    .await;
    let reply = app.checkout(input(&cart.id)).await.expect("retry");
    assert_eq!(reply.response.status, 201);
    let list = control(
        &emulator,
        reqwest::Method::GET,
        "/v1/payment_intents",
        json!({}),
    )
    .await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(1),
        "one PaymentIntent"
    );
    emulator.shutdown().await;
}
both_backends!(risk_g7_hanging_stripe_gives_the_customer_503_within_the_timeout);
