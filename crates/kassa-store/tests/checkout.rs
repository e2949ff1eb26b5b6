//! The checkout saga on SQLite and PostgreSQL: idempotency, concurrency, pricing authority,
//! stock, and recovery from every way the provider call or the process can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kassa_app::App;
use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_app::checkout::CheckoutInput;
use kassa_app::ports::{Actor, ShippingAddress};
use kassa_testkit::provider::{FakeProvider, Script};
use kassa_testkit::{TestClock, TestDb, app_with, app_with_clock, both_backends};
use serde_json::Value;

struct Shop {
    app: App,
    provider: Arc<FakeProvider>,
    clock: Arc<TestClock>,
    db: TestDb,
}

async fn shop(db: TestDb, stock: i64) -> Shop {
    let provider = Arc::new(FakeProvider::new());
    let clock = TestClock::new();
    let app = app_with_clock(&db, provider.clone(), clock.clone());
    kassa_testkit::seed_product(&app, "Mug", "MUG", 1250, "eur", stock).await;
    Shop {
        app,
        provider,
        clock,
        db,
    }
}

impl Shop {
    async fn cart(&self, quantity: i64) -> String {
        let cart = self.app.create_cart("eur").await.expect("cart");
        self.app
            .add_cart_line(&cart.id, "MUG", quantity)
            .await
            .expect("line");
        cart.id
    }

    async fn stock(&self) -> (i64, i64, i64) {
        let level = &self.app.inventory("MUG").await.expect("inventory")[0].stock;
        (level.available(), level.reserved, level.committed)
    }

    async fn count(&self, sql: &'static str) -> i64 {
        let pool = sqlx::AnyPool::connect(&self.db.url).await.expect("pool");
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    }
}

fn input(cart_id: &str, key: &str, expected_total_minor: i64) -> CheckoutInput {
    CheckoutInput {
        cart_id: cart_id.to_owned(),
        key_scope: "publishable".into(),
        idempotency_key: Some(key.to_owned()),
        email: "ada@example.com".into(),
        shipping: ShippingAddress {
            name: "Ada Lovelace".into(),
            line1: "1 Analytical St".into(),
            city: "London".into(),
            postal_code: "N1 1AA".into(),
            country: "GB".into(),
        },
        expected_total_minor,
        flow: kassa_app::checkout::CheckoutFlow::Embedded,
        actor: Actor {
            kind: "test".into(),
            request_id: Some("req_test".into()),
            client_ip: None,
        },
    }
}

fn body(reply: &kassa_app::checkout::CheckoutReply) -> Value {
    serde_json::from_str(&reply.response.body).expect("stored body is JSON")
}

async fn risk_g3_risk_g5_concurrent_checkouts_make_one_order_and_one_intent(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(2).await;
    let requests = (0..50).map(|i| {
        let app = shop.app.clone();
        let key = if i % 2 == 0 {
            "same-key".to_owned()
        } else {
            format!("fresh-{i}")
        };
        let cart = cart.clone();
        tokio::spawn(async move { app.checkout(input(&cart, &key, 2500)).await })
    });
    let mut orders = BTreeSet::new();
    let mut statuses = BTreeMap::new();
    for request in futures_join(requests).await {
        match request {
            Ok(reply) => {
                let body = body(&reply);
                *statuses.entry(reply.response.status).or_insert(0) += 1;
                if reply.response.status == 201 {
                    orders.insert(body["order"]["id"].as_str().expect("order id").to_owned());
                } else {
                    assert_eq!(body["error"]["code"], "cart_already_checked_out", "{body}");
                }
            }
            Err(kassa_app::AppError::RequestInProgress { .. }) => {
                *statuses.entry(409).or_insert(0) += 1
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        orders.len(),
        1,
        "one order id across all answers: {statuses:?}"
    );
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(shop.count("SELECT COUNT(*) FROM payments").await, 1);
    assert_eq!(shop.count("SELECT COUNT(*) FROM reservations").await, 1);
    assert_eq!(
        shop.provider.intents().len(),
        1,
        "one PaymentIntent at the provider"
    );
    assert_eq!(shop.stock().await, (8, 2, 0));
}
both_backends!(risk_g3_risk_g5_concurrent_checkouts_make_one_order_and_one_intent);

/// Runs spawned tasks to completion, keeping their results in order.
async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut results = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        results.push(handle.await.expect("task did not panic"));
    }
    results
}

async fn risk_g3_same_key_same_request_replays_the_same_answer(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(1).await;
    let first = shop
        .app
        .checkout(input(&cart, "k1", 1250))
        .await
        .expect("first");
    assert_eq!((first.response.status, first.replayed), (201, false));
    let again = shop
        .app
        .checkout(input(&cart, "k1", 1250))
        .await
        .expect("replay");
    assert!(again.replayed);
    assert_eq!(again.response, first.response, "same status and body");
    let reused = shop.app.checkout(input(&cart, "k1", 1300)).await;
    assert!(
        matches!(reused, Err(kassa_app::AppError::IdempotencyKeyReused)),
        "{reused:?}"
    );
    let missing = shop
        .app
        .checkout(CheckoutInput {
            idempotency_key: None,
            ..input(&cart, "", 1250)
        })
        .await;
    assert!(matches!(
        missing,
        Err(kassa_app::AppError::IdempotencyKeyRequired)
    ));
    assert_eq!(shop.provider.create_calls(), 1);
}
both_backends!(risk_g3_same_key_same_request_replays_the_same_answer);

async fn risk_g8_risk_s1_changed_price_is_refused_before_anything_is_reserved(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(2).await;
    // The customer was shown 2 × 12.50; the shop reprices before they pay.
    shop.app
        .update_variant("MUG", Some(1400), None)
        .await
        .expect("reprice");
    let reply = shop
        .app
        .checkout(input(&cart, "k", 2500))
        .await
        .expect("answer");
    let body = body(&reply);
    assert_eq!(
        (reply.response.status, body["error"]["code"].as_str()),
        (409, Some("price_changed"))
    );
    assert_eq!(body["error"]["total"], 2800);
    assert_eq!(shop.stock().await, (10, 0, 0), "nothing reserved");
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(shop.provider.create_calls(), 0);
    // With the total it now shows, the customer is charged exactly that.
    let reply = shop
        .app
        .checkout(input(&cart, "k2", 2800))
        .await
        .expect("answer");
    assert_eq!(reply.response.status, 201);
    assert_eq!(shop.provider.intents()[0].amount_minor, 2800);
}
both_backends!(risk_g8_risk_s1_changed_price_is_refused_before_anything_is_reserved);

async fn risk_p4_twenty_carts_race_for_five_units(db: TestDb) {
    let shop = shop(db, 5).await;
    let mut carts = Vec::new();
    for _ in 0..20 {
        carts.push(shop.cart(1).await);
    }
    let requests = carts.into_iter().enumerate().map(|(i, cart)| {
        let app = shop.app.clone();
        tokio::spawn(async move { app.checkout(input(&cart, &format!("k{i}"), 1250)).await })
    });
    let mut created = 0;
    let mut short = 0;
    for reply in futures_join(requests).await {
        let reply = reply.expect("answer");
        match reply.response.status {
            201 => created += 1,
            409 => {
                assert_eq!(body(&reply)["error"]["code"], "insufficient_stock");
                assert_eq!(body(&reply)["error"]["skus"], serde_json::json!(["MUG"]));
                short += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, short), (5, 15));
    assert_eq!(shop.stock().await, (0, 5, 0), "available never below zero");
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 5);
}
both_backends!(risk_p4_twenty_carts_race_for_five_units);

async fn risk_p1_lost_response_then_retry_finds_the_same_intent(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(1).await;
    shop.provider.script([Script::LostResponse]);
    let first = shop.app.checkout(input(&cart, "k", 1250)).await;
    assert!(
        matches!(first, Err(kassa_app::AppError::ProviderUnavailable { .. })),
        "{first:?}"
    );
    assert_eq!(
        shop.stock().await,
        (9, 1, 0),
        "an unknown outcome is never compensated"
    );
    let retry = shop
        .app
        .checkout(input(&cart, "k", 1250))
        .await
        .expect("retry");
    assert_eq!(retry.response.status, 201);
    let intents = shop.provider.intents();
    assert_eq!(
        intents.len(),
        1,
        "the retry reused the deterministic provider key"
    );
    assert_eq!(
        body(&retry)["payment"]["payment_intent_id"],
        intents[0].id.as_str()
    );
}
both_backends!(risk_p1_lost_response_then_retry_finds_the_same_intent);

async fn risk_p2_definite_refusal_compensates_in_one_step(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(3).await;
    shop.provider.script([Script::Decline]);
    let reply = shop
        .app
        .checkout(input(&cart, "k", 3750))
        .await
        .expect("answer");
    assert_eq!(
        (
            reply.response.status,
            body(&reply)["error"]["code"].as_str()
        ),
        (402, Some("provider_refused"))
    );
    assert_eq!(shop.stock().await, (10, 0, 0), "reservations released");
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM orders WHERE status = 'canceled'")
            .await,
        1
    );
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM payments WHERE status = 'failed'")
            .await,
        1
    );
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id)").await,
        0,
        "no order without its payment record"
    );
    let replay = shop
        .app
        .checkout(input(&cart, "k", 3750))
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(replay.response.status, 402);
}
both_backends!(risk_p2_definite_refusal_compensates_in_one_step);

async fn risk_p1_abandoned_checkout_is_finished_by_the_completer(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(1).await;
    shop.provider.script([Script::LostRequest]);
    assert!(shop.app.checkout(input(&cart, "k", 1250)).await.is_err());
    // The client never comes back. Too early, the completer leaves it alone…
    assert_eq!(
        shop.app.complete_stalled_checkouts(10).await.expect("runs"),
        0
    );
    shop.clock.advance(120);
    // …later it creates the intent with the same provider key and records it.
    assert_eq!(
        shop.app.complete_stalled_checkouts(10).await.expect("runs"),
        1
    );
    assert_eq!(shop.provider.intents().len(), 1);
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM payments WHERE provider_payment_intent_id IS NOT NULL")
            .await,
        1
    );
    let late_retry = shop
        .app
        .checkout(input(&cart, "k", 1250))
        .await
        .expect("replay");
    assert!(late_retry.replayed);
    assert_eq!(late_retry.response.status, 201);
}
both_backends!(risk_p1_abandoned_checkout_is_finished_by_the_completer);

async fn risk_p2_crash_between_phases_resumes_from_the_recovery_point(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(1).await;
    // A request that committed its local phase and then died (no provider call, no unlock):
    // the intent is created with a delay long enough to abandon the task mid-flight.
    shop.provider
        .script([Script::Delay(Duration::from_secs(3600))]);
    let app = shop.app.clone();
    let cart_id = cart.clone();
    let doomed = tokio::spawn(async move { app.checkout(input(&cart_id, "k", 1250)).await });
    for _ in 0..500 {
        if shop.count("SELECT COUNT(*) FROM orders").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.abort();
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 1);
    // While its lock holds, a retry is told to wait; once it lapses, the retry resumes.
    let early = shop.app.checkout(input(&cart, "k", 1250)).await;
    assert!(
        matches!(early, Err(kassa_app::AppError::RequestInProgress { .. })),
        "{early:?}"
    );
    shop.clock.advance(61);
    let resumed = shop
        .app
        .checkout(input(&cart, "k", 1250))
        .await
        .expect("resumed");
    assert_eq!(resumed.response.status, 201);
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(shop.provider.intents().len(), 1);
    assert_eq!(shop.stock().await, (9, 1, 0));
}
both_backends!(risk_p2_crash_between_phases_resumes_from_the_recovery_point);

async fn risk_p8_catalog_changes_never_reach_a_placed_order(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(2).await;
    let reply = shop
        .app
        .checkout(input(&cart, "k", 2500))
        .await
        .expect("checkout");
    let order_id = body(&reply)["order"]["id"].as_str().expect("id").to_owned();
    shop.app
        .update_variant("MUG", Some(99_999), Some(false))
        .await
        .expect("reprice and retire");
    let order = shop.app.order(&order_id).await.expect("order");
    assert_eq!(order.total.amount_minor(), 2500);
    assert_eq!(
        (
            order.lines[0].unit_amount_minor,
            order.lines[0].amount_minor
        ),
        (1250, 2500)
    );
    assert_eq!(order.lines[0].product_name, "Mug");
}
both_backends!(risk_p8_catalog_changes_never_reach_a_placed_order);

async fn risk_g7_no_database_connection_is_held_during_the_provider_call(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(1).await;
    let other_cart = shop.cart(1).await;
    shop.provider
        .script([Script::Delay(Duration::from_secs(3))]);
    let app = shop.app.clone();
    let waiting = tokio::spawn(async move { app.checkout(input(&cart, "k", 1250)).await });
    while shop.provider.create_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SQLite has a single connection: if the checkout held it, this would wait for the call.
    shop.app
        .cart_view(&other_cart)
        .await
        .expect("database is free");
    shop.app
        .add_cart_line(&other_cart, "MUG", 1)
        .await
        .expect("writes too");
    assert!(
        !waiting.is_finished(),
        "the provider call is still in flight"
    );
    let reply = waiting.await.expect("task").expect("checkout");
    assert_eq!(reply.response.status, 201);
}
both_backends!(risk_g7_no_database_connection_is_held_during_the_provider_call);

async fn risk_s2_order_token_reads_only_its_own_order_with_pii_masked(db: TestDb) {
    let provider = Arc::new(FakeProvider::new());
    let shop = Shop {
        app: app_with(&db, provider.clone()),
        provider,
        clock: TestClock::new(),
        db,
    };
    shop.app
        .create_product(NewProduct {
            seller_id: None,
            name: "Mug".into(),
            variants: vec![NewVariant {
                sku: "MUG".into(),
                unit_amount_minor: 1250,
                currency: "eur".into(),
                attributes: BTreeMap::new(),
                credits: 0,
            }],
        })
        .await
        .expect("product");
    shop.app.set_on_hand("MUG", None, 5).await.expect("stock");
    let first = shop.cart(1).await;
    let second = shop.cart(1).await;
    let a = body(
        &shop
            .app
            .checkout(input(&first, "a", 1250))
            .await
            .expect("a"),
    );
    let b = body(
        &shop
            .app
            .checkout(input(&second, "b", 1250))
            .await
            .expect("b"),
    );
    let token_a = a["order_token"].as_str().expect("token");
    let order_a = a["order"]["id"].as_str().expect("id");
    let order_b = b["order"]["id"].as_str().expect("id");
    let view = shop
        .app
        .order_for_customer(order_a, token_a)
        .await
        .expect("read")
        .expect("allowed");
    assert_eq!(view.order.email, "a**************");
    assert_eq!(view.order.shipping.name, "A** L*******");
    assert!(
        shop.app
            .order_for_customer(order_b, token_a)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        shop.app
            .order_for_customer(order_a, order_a)
            .await
            .expect("read")
            .is_none()
    );
}
both_backends!(risk_s2_order_token_reads_only_its_own_order_with_pii_masked);

async fn risk_p2_database_failing_in_the_finish_phase_is_resumed_with_the_same_intent(db: TestDb) {
    let shop = shop(db, 10).await;
    let cart = shop.cart(1).await;
    // The intent is created at the provider, then recording it fails.
    shop.db.store.faults().arm("checkout.before_finish");
    let failed = shop.app.checkout(input(&cart, "k", 1250)).await;
    assert!(
        matches!(failed, Err(kassa_app::AppError::Store(_))),
        "{failed:?}"
    );
    assert_eq!(shop.provider.intents().len(), 1);
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM payments WHERE status = 'creating'")
            .await,
        1,
        "order and payment row kept"
    );
    assert_eq!(shop.stock().await, (9, 1, 0), "never compensated");
    // Once the request's lock lapses, the retry resumes at the recovery point.
    shop.clock.advance(61);
    let resumed = shop
        .app
        .checkout(input(&cart, "k", 1250))
        .await
        .expect("resumed");
    assert_eq!(resumed.response.status, 201);
    assert_eq!(
        shop.provider.intents().len(),
        1,
        "the same PaymentIntent, recorded"
    );
    assert_eq!(
        body(&resumed)["payment"]["payment_intent_id"],
        shop.provider.intents()[0].id.as_str()
    );
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM payments WHERE provider_payment_intent_id IS NOT NULL")
            .await,
        1
    );
}
both_backends!(risk_p2_database_failing_in_the_finish_phase_is_resumed_with_the_same_intent);

/// An outcome the provider never makes known is retried every round with the same key, and after
/// an hour handed to a person — flagged with an audit record — never guessed (risk R1).
async fn risk_r1_an_outcome_that_stays_unknown_ends_flagged_not_guessed(db: TestDb) {
    let shop = shop(db, 5).await;
    let cart = shop.cart(1).await;
    shop.provider
        .script(std::iter::repeat_n(Script::LostRequest, 50));
    let first = shop.app.checkout(input(&cart, "lost", 1250)).await;
    assert!(first.is_err(), "{first:?}");
    for _ in 0..3 {
        shop.clock.advance(120);
        assert_eq!(
            shop.app
                .complete_stalled_checkouts(10)
                .await
                .expect("round"),
            0
        );
    }
    let calls_while_trying = shop.provider.create_calls();
    assert!(
        calls_while_trying >= 4,
        "asked again each round: {calls_while_trying}"
    );
    shop.clock
        .advance(kassa_app::checkout::UNKNOWN_OUTCOME_GIVE_UP_SECS);
    shop.app
        .complete_stalled_checkouts(10)
        .await
        .expect("round");
    let flagged = shop
        .count("SELECT COUNT(*) FROM orders WHERE needs_attention LIKE 'unknown_outcome%'")
        .await;
    assert_eq!(flagged, 1);
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM audit_log WHERE action = 'flagged'")
            .await,
        1
    );
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM orders WHERE status = 'pending_payment'")
            .await,
        1,
        "nothing was canceled or paid on a guess"
    );
    // Handed over: later rounds leave it to the person.
    shop.clock.advance(120);
    shop.app
        .complete_stalled_checkouts(10)
        .await
        .expect("round");
    assert_eq!(shop.provider.create_calls(), calls_while_trying);
}
both_backends!(risk_r1_an_outcome_that_stays_unknown_ends_flagged_not_guessed);

/// Velocity limits (risk S7): a customer e-mail and a client address place only so many
/// checkouts per window. The next is refused with how long to wait, nothing reserved and its
/// key left free; a retry of a checkout already placed still replays; the window moves on.
async fn risk_s7_checkouts_per_email_and_address_are_limited(db: TestDb) {
    let provider = Arc::new(FakeProvider::new());
    let clock = TestClock::new();
    let settings = kassa_app::Settings {
        checkout_velocity: kassa_app::checkout::VelocityLimits {
            per_email: 2,
            per_client_ip: 3,
            window_secs: 600,
        },
        ..kassa_testkit::test_settings()
    };
    let verifier = Arc::new(kassa_testkit::verifier::RejectingVerifier);
    let app =
        kassa_testkit::app_with_settings(&db, provider.clone(), clock.clone(), verifier, settings);
    kassa_testkit::seed_product(&app, "Mug", "MUG", 1250, "eur", 20).await;
    let shop = Shop {
        app,
        provider,
        clock,
        db,
    };
    let from = |email: &str, ip: &str, cart: &str, key: &str| CheckoutInput {
        email: email.into(),
        actor: Actor {
            kind: "test".into(),
            request_id: None,
            client_ip: Some(ip.into()),
        },
        ..input(cart, key, 1250)
    };
    let mut placed = Vec::new();
    for n in 0..2 {
        let cart = shop.cart(1).await;
        let key = format!("ada-{n}");
        let reply = shop
            .app
            .checkout(from("ada@example.com", "192.0.2.1", &cart, &key))
            .await
            .expect("within the limit");
        assert_eq!(reply.response.status, 201);
        placed.push((cart, key));
        shop.clock.advance(60);
    }
    // A third by the same e-mail, from another address: refused, told to wait until the
    // first of the two leaves the window (placed 120 s ago, window 600 s).
    let third = shop.cart(1).await;
    let refused = shop
        .app
        .checkout(from("ada@example.com", "198.51.100.7", &third, "ada-2"))
        .await;
    assert!(
        matches!(
            refused,
            Err(kassa_app::AppError::RateLimited {
                retry_after_secs: 480
            })
        ),
        "{refused:?}"
    );
    assert_eq!(shop.stock().await, (18, 2, 0), "nothing reserved");
    // The retry of a placed checkout is a replay, never refused.
    let (cart, key) = &placed[0];
    let replay = shop
        .app
        .checkout(from("ada@example.com", "192.0.2.1", cart, key))
        .await
        .expect("replay");
    assert!(replay.replayed);
    // The address has one more: another customer from it gets it, then the next is refused.
    let bob = shop.cart(1).await;
    shop.app
        .checkout(from("bob@example.com", "192.0.2.1", &bob, "bob-0"))
        .await
        .expect("the address's third");
    let carol = shop.cart(1).await;
    let refused = shop
        .app
        .checkout(from("carol@example.com", "192.0.2.1", &carol, "carol-0"))
        .await;
    assert!(
        matches!(refused, Err(kassa_app::AppError::RateLimited { .. })),
        "{refused:?}"
    );
    // Once the window has moved past the first checkouts, the same key goes through.
    shop.clock.advance(600);
    let later = shop
        .app
        .checkout(from("ada@example.com", "198.51.100.7", &third, "ada-2"))
        .await
        .expect("the window moved on");
    assert_eq!(later.response.status, 201);
    assert_eq!(
        shop.count("SELECT COUNT(*) FROM orders WHERE client_ip = '192.0.2.1'")
            .await,
        3
    );
}
both_backends!(risk_s7_checkouts_per_email_and_address_are_limited);

/// A total Stripe would refuse (below its minimum charge for the currency) is refused before
/// anything is reserved or sent, not answered 402 after the stock was held.
async fn risk_p4_a_total_below_stripes_minimum_is_refused_before_anything_is_reserved(db: TestDb) {
    let shop = shop(db, 10).await;
    kassa_testkit::seed_product(&shop.app, "Sticker", "STICKER", 30, "eur", 10).await;
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "STICKER", 1)
        .await
        .expect("line");
    let reply = shop
        .app
        .checkout(input(&cart.id, "small", 30))
        .await
        .expect("answer");
    let body = body(&reply);
    assert_eq!(
        (reply.response.status, body["error"]["code"].as_str()),
        (422, Some("amount_too_small")),
        "{body}"
    );
    let level = &shop.app.inventory("STICKER").await.expect("inventory")[0].stock;
    assert_eq!(
        (level.reserved, level.committed),
        (0, 0),
        "nothing reserved"
    );
    assert_eq!(shop.count("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(shop.provider.create_calls(), 0);
    // Two stickers reach Stripe's 0.50 EUR: the checkout goes through.
    shop.app
        .add_cart_line(&cart.id, "STICKER", 1)
        .await
        .expect("line");
    let reply = shop
        .app
        .checkout(input(&cart.id, "enough", 60))
        .await
        .expect("answer");
    assert_eq!(reply.response.status, 201);
}
both_backends!(risk_p4_a_total_below_stripes_minimum_is_refused_before_anything_is_reserved);
