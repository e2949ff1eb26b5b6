//! The adapter over real HTTP against the emulator: round trips, every fault mode, and the
//! guarantees the checkout saga relies on (one intent per key, bounded time, honest outcomes).

use std::time::{Duration, Instant};

use kassa_app::ports::{
    CaptureMethod, CreatePaymentIntent, CreateRefund, PaymentProvider, ProviderError,
};
use kassa_domain::Currency;
use kassa_domain::payment::PaymentStatus;
use kassa_emulator::{Emulator, EmulatorConfig};
use kassa_stripe::{StripeClient, StripeConfig};
use serde_json::{Value, json};

async fn setup() -> (Emulator, StripeClient) {
    let emulator = Emulator::start(EmulatorConfig::for_tests())
        .await
        .expect("emulator");
    let mut config = StripeConfig::new(&emulator.base_url(), &emulator.config().secret_key);
    config.request_timeout = Duration::from_millis(800);
    config.backoff_base = Duration::from_millis(20);
    let client = StripeClient::new(config).expect("client");
    (emulator, client)
}

fn create(key: &str, amount_minor: i64) -> CreatePaymentIntent {
    CreatePaymentIntent {
        destination: None,
        transfer_group: None,
        amount_minor,
        currency: Currency::parse("eur").expect("known"),
        capture_method: CaptureMethod::Automatic,
        metadata: vec![("kassa_order_id".into(), "ord_1".into())],
        idempotency_key: key.into(),
    }
}

async fn control(emulator: &Emulator, path: &str, body: Value) -> Value {
    let http = reqwest::Client::new();
    http.post(format!("{}{path}", emulator.base_url()))
        .bearer_auth(&emulator.config().secret_key)
        .json(&body)
        .send()
        .await
        .expect("control answers")
        .json()
        .await
        .expect("json")
}

async fn intents_at_emulator(emulator: &Emulator) -> usize {
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!(
            "{}/v1/payment_intents?limit=100",
            emulator.base_url()
        ))
        .bearer_auth(&emulator.config().secret_key)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    list["data"].as_array().map_or(0, Vec::len)
}

async fn fault(emulator: &Emulator, endpoint: &str, answers: Value) {
    control(
        emulator,
        "/_emulator/faults",
        json!({"api": [{"endpoint": endpoint, "answers": answers}]}),
    )
    .await;
}

#[tokio::test]
async fn round_trip_create_confirm_capture_refund_cancel_events() {
    let (emulator, client) = setup().await;
    let intent = client
        .create_payment_intent(create("k1", 2000))
        .await
        .expect("created");
    assert_eq!(
        (intent.status, intent.amount_minor, intent.currency.as_str()),
        (PaymentStatus::RequiresPaymentMethod, 2000, "eur")
    );
    assert!(intent.client_secret.is_some());
    assert_eq!(
        intent.metadata,
        vec![("kassa_order_id".to_owned(), "ord_1".to_owned())]
    );
    let http = reqwest::Client::new();
    http.post(format!(
        "{}/v1/payment_intents/{}/confirm",
        emulator.base_url(),
        intent.id
    ))
    .bearer_auth(&emulator.config().publishable_key)
    .form(&[
        ("payment_method", "pm_card_visa"),
        (
            "client_secret",
            intent.client_secret.as_deref().unwrap_or_default(),
        ),
    ])
    .send()
    .await
    .expect("confirmed");
    let paid = client
        .retrieve_payment_intent(&intent.id)
        .await
        .expect("retrieved");
    assert_eq!(
        (paid.status, paid.amount_received_minor),
        (PaymentStatus::Succeeded, 2000)
    );
    let refund = client
        .create_refund(CreateRefund {
            payment_intent_id: intent.id.clone(),
            amount_minor: 500,
            reverse_transfer: false,
            reason: Some("requested_by_customer".into()),
            metadata: vec![],
            idempotency_key: "r1".into(),
        })
        .await
        .expect("refunded");
    assert_eq!(
        client
            .retrieve_refund(&refund.id)
            .await
            .expect("refund")
            .amount_minor,
        500
    );
    let manual = client
        .create_payment_intent(CreatePaymentIntent {
            destination: None,
            transfer_group: None,
            capture_method: CaptureMethod::Manual,
            ..create("k2", 3000)
        })
        .await
        .expect("created");
    let canceled = client
        .cancel_payment_intent(&manual.id, "c1")
        .await
        .expect("canceled");
    assert_eq!(canceled.status, PaymentStatus::Canceled);
    let page = client.list_events(0, None, 100).await.expect("events");
    assert!(
        page.events
            .iter()
            .any(|e| e.event_type == "payment_intent.succeeded")
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_key() {
    let (emulator, client) = setup().await;
    fault(
        &emulator,
        "POST /v1/payment_intents",
        json!([{"status": 500}, {"status": 429}]),
    )
    .await;
    let intent = client
        .create_payment_intent(create("k", 1000))
        .await
        .expect("third attempt succeeds");
    assert_eq!(intent.amount_minor, 1000);
    assert_eq!(intents_at_emulator(&emulator).await, 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn exhausted_retries_are_unknown_not_failed() {
    let (emulator, client) = setup().await;
    fault(
        &emulator,
        "POST /v1/payment_intents",
        json!([{"status": 500}, {"status": 503}, {"status": 502}]),
    )
    .await;
    let outcome = client.create_payment_intent(create("k", 1000)).await;
    assert!(
        matches!(outcome, Err(ProviderError::Unknown { .. })),
        "{outcome:?}"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn refusals_are_definite() {
    let (emulator, client) = setup().await;
    let too_small = client.create_payment_intent(create("k1", 10)).await;
    assert!(
        matches!(&too_small, Err(ProviderError::Definite { code, .. }) if code == "amount_too_small"),
        "{too_small:?}"
    );
    let missing = client.retrieve_payment_intent("pi_missing").await;
    assert!(
        matches!(&missing, Err(ProviderError::Definite { code, .. }) if code == "resource_missing"),
        "{missing:?}"
    );
    // A key reused with other parameters: Stripe refuses, but the key's first request may
    // have done something, so the outcome is unknown, never a refusal to compensate on.
    let reused = client.create_payment_intent(create("k1", 2000)).await;
    assert!(
        matches!(&reused, Err(ProviderError::Unknown { reason }) if reason.starts_with("idempotency_error")),
        "{reused:?}"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn risk_p1_lost_response_then_retry_yields_one_payment_intent() {
    let (emulator, client) = setup().await;
    // Within one call: the first attempt's answer is lost, the retry with the same key gets the
    // stored answer for the intent the first attempt created.
    fault(
        &emulator,
        "POST /v1/payment_intents",
        json!(["lose_response"]),
    )
    .await;
    let recovered = client
        .create_payment_intent(create("kassa-create-pi-pay_1", 1500))
        .await
        .expect("recovered");
    assert_eq!(intents_at_emulator(&emulator).await, 1);

    // Across calls: a client that gives up after one attempt reports Unknown; the caller's
    // retry with the same key finds the same intent instead of creating a second.
    let mut config = StripeConfig::new(&emulator.base_url(), &emulator.config().secret_key);
    config.request_timeout = Duration::from_millis(500);
    config.attempts_max = 1;
    let impatient = StripeClient::new(config).expect("client");
    fault(
        &emulator,
        "POST /v1/payment_intents",
        json!(["lose_response"]),
    )
    .await;
    let lost = impatient
        .create_payment_intent(create("kassa-create-pi-pay_2", 1500))
        .await;
    assert!(
        matches!(lost, Err(ProviderError::Unknown { .. })),
        "{lost:?}"
    );
    assert_eq!(intents_at_emulator(&emulator).await, 2);
    let found = impatient
        .create_payment_intent(create("kassa-create-pi-pay_2", 1500))
        .await
        .expect("replayed");
    assert_eq!(
        intents_at_emulator(&emulator).await,
        2,
        "the same key named the same intent"
    );
    assert_ne!(found.id, recovered.id);
    emulator.shutdown().await;
}

#[tokio::test]
async fn risk_g7_hanging_stripe_is_cut_off_within_the_timeout() {
    let (emulator, client) = setup().await;
    fault(
        &emulator,
        "POST /v1/payment_intents",
        json!([{"hang_ms": 0}, {"hang_ms": 0}, {"hang_ms": 0}]),
    )
    .await;
    let started = Instant::now();
    // Without the adapter's timeout this would hang until the test's own bound and fail.
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        client.create_payment_intent(create("k", 1000)),
    )
    .await
    .expect("the adapter must give up by itself");
    assert!(
        matches!(outcome, Err(ProviderError::Unknown { .. })),
        "{outcome:?}"
    );
    // 3 attempts × 800 ms + backoff: far below the 20 s the test would otherwise wait.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn risk_g7_unreachable_stripe_is_unknown_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let closed = listener.local_addr().expect("address");
    drop(listener);
    let mut config = StripeConfig::new(&format!("http://{closed}"), "sk_test_x");
    config.connect_timeout = Duration::from_millis(300);
    config.backoff_base = Duration::from_millis(10);
    let client = StripeClient::new(config).expect("client");
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        client.create_payment_intent(create("k", 1000)),
    )
    .await
    .expect("bounded");
    assert!(
        matches!(outcome, Err(ProviderError::Unknown { .. })),
        "{outcome:?}"
    );
}
