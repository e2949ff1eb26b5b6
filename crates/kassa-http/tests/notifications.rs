//! Merchant notifications from the outbox over real HTTP, on both backends (risk W4): signed the
//! way Stripe signs (checked with the emulator's signer, which shares no code with Kassa's),
//! retried with backoff under one stable id, dead-lettered, replayed by an operator.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kassa_app::checkout::CheckoutInput;
use kassa_app::notifications::NOTIFY_ATTEMPTS_MAX;
use kassa_app::ports::{Actor, NotificationStatus, ShippingAddress};
use kassa_domain::payment::PaymentStatus;
use kassa_http::notify::HttpNotifier;
use kassa_testkit::provider::FakeProvider;
use kassa_testkit::{TestClock, TestDb, both_backends};
use serde_json::Value;

const SECRET: &str = "whsec_kassa_notify_test";

/// A receiver that refuses the next `failing` deliveries, then takes them; keeps what it got.
#[derive(Default)]
struct Receiver {
    failing: u32,
    got: Vec<(String, String)>,
}

async fn receiver() -> (String, Arc<Mutex<Receiver>>) {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let shared = state.clone();
    let router = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let shared = shared.clone();
            async move {
                let mut receiver = shared.lock().expect("lock");
                let signature = headers
                    .get("kassa-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                receiver.got.push((signature, body));
                if receiver.failing > 0 {
                    receiver.failing -= 1;
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, state)
}

async fn risk_w4_notifications_are_signed_retried_dead_lettered_and_replayed(db: TestDb) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(FakeProvider::new());
    let clock = TestClock::new();
    let app = kassa_testkit::app_with_clock(&db, provider.clone(), clock.clone());
    kassa_testkit::seed_product(&app, "Mug", "MUG", 1250, "eur", 5).await;
    let cart = app.create_cart("eur").await.expect("cart");
    app.add_cart_line(&cart.id, "MUG", 1).await.expect("line");
    let actor = Actor {
        kind: "test".into(),
        request_id: None,
        client_ip: None,
    };
    let reply = app
        .checkout(CheckoutInput {
            cart_id: cart.id.clone(),
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
            actor,
        })
        .await
        .expect("checkout");
    let body: Value = serde_json::from_str(&reply.response.body).expect("json");
    let order_id = body["order"]["id"].as_str().expect("order");
    let intent = body["payment"]["payment_intent_id"]
        .as_str()
        .expect("intent");
    provider.set_status(intent, PaymentStatus::Succeeded);
    app.sync_payment(order_id).await.expect("paid");

    let (url, receiver) = receiver().await;
    receiver.lock().expect("lock").failing = 2;
    let notifier = HttpNotifier::new(SECRET.into()).expect("client");
    let urls = [url];
    // Refused twice, retried after its backoff each time, then taken.
    assert_eq!(
        app.deliver_notifications(&notifier, &urls, 10)
            .await
            .expect("round"),
        0
    );
    assert_eq!(
        app.deliver_notifications(&notifier, &urls, 10)
            .await
            .expect("round"),
        0,
        "not due"
    );
    clock.advance(5);
    assert_eq!(
        app.deliver_notifications(&notifier, &urls, 10)
            .await
            .expect("round"),
        0
    );
    clock.advance(10);
    assert_eq!(
        app.deliver_notifications(&notifier, &urls, 10)
            .await
            .expect("round"),
        1
    );
    let got = receiver.lock().expect("lock").got.clone();
    assert_eq!(got.len(), 3);
    let ids: Vec<Value> = got
        .iter()
        .map(|(_, body)| serde_json::from_str::<Value>(body).expect("json")["id"].clone())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one stable id: {ids:?}");
    for (signature, body) in &got {
        let timestamp: i64 = signature
            .strip_prefix("t=")
            .and_then(|rest| rest.split(',').next())
            .and_then(|t| t.parse().ok())
            .expect("t=");
        assert_eq!(
            signature,
            &kassa_emulator::signature_header(SECRET, timestamp, body)
        );
        let event: Value = serde_json::from_str(body).expect("json");
        assert_eq!(
            (event["type"].as_str(), event["data"]["order_id"].as_str()),
            (Some("order.paid"), Some(order_id))
        );
    }

    // A notification no receiver takes ends dead after the maximum attempts, and is replayed.
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    sqlx::query(
        "INSERT INTO outbox (id, topic, business_key, payload, status, attempts, next_attempt_at, created_at)
         VALUES ('obx_test', 'order.refunded', 'order.refunded:test', '{\"type\":\"order.refunded\"}', 'pending', 0, 0, 0)",
    )
    .execute(&pool)
    .await
    .expect("row");
    pool.close().await;
    receiver.lock().expect("lock").failing = u32::MAX;
    for _ in 0..NOTIFY_ATTEMPTS_MAX {
        app.deliver_notifications(&notifier, &urls, 10)
            .await
            .expect("round");
        clock.advance(3_600);
    }
    let dead = app
        .notifications(NotificationStatus::Dead)
        .await
        .expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, NOTIFY_ATTEMPTS_MAX);
    receiver.lock().expect("lock").failing = 0;
    app.replay_notification("obx_test").await.expect("replayed");
    assert_eq!(
        app.deliver_notifications(&notifier, &urls, 10)
            .await
            .expect("round"),
        1
    );
    assert!(
        app.notifications(NotificationStatus::Dead)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        app.replay_notification("obx_test").await.is_err(),
        "a delivered one is not replayed"
    );
}
both_backends!(risk_w4_notifications_are_signed_retried_dead_lettered_and_replayed);

/// Two instances delivering at the same time send each notification once (the claim is a
/// compare-and-set with a lease), counted at the receiver.
async fn risk_w4_two_instances_deliver_each_notification_once(db: TestDb) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let clock = TestClock::new();
    let first = kassa_testkit::app_with_clock(&db, Arc::new(FakeProvider::new()), clock.clone());
    let second = kassa_testkit::app_with_clock(&db, Arc::new(FakeProvider::new()), clock.clone());
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("pool");
    for n in 0..40 {
        sqlx::query(
            "INSERT INTO outbox (id, topic, business_key, payload, status, attempts, next_attempt_at, created_at)
             VALUES ($1, 'order.paid', $1, '{}', 'pending', 0, 0, 0)",
        )
        .bind(format!("obx_{n:02}"))
        .execute(&pool)
        .await
        .expect("row");
    }
    pool.close().await;
    let (url, receiver) = receiver().await;
    let urls = Arc::new(vec![url]);
    let notifier = Arc::new(HttpNotifier::new(SECRET.into()).expect("client"));
    let rounds: Vec<_> = [first, second]
        .into_iter()
        .map(|app| {
            let (urls, notifier) = (urls.clone(), notifier.clone());
            tokio::spawn(async move {
                app.deliver_notifications(notifier.as_ref(), &urls, 100)
                    .await
                    .expect("round")
            })
        })
        .collect();
    let mut delivered = 0;
    for round in rounds {
        delivered += round.await.expect("task");
    }
    assert_eq!(delivered, 40);
    let got = receiver.lock().expect("lock").got.clone();
    let mut ids: Vec<String> = got
        .iter()
        .map(|(_, body)| {
            serde_json::from_str::<Value>(body).expect("json")["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((got.len(), ids.len()), (40, 40), "each sent once");
}
both_backends!(risk_w4_two_instances_deliver_each_notification_once);
