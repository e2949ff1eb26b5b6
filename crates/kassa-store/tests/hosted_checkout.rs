//! Hosted checkout (Checkout Sessions) with the real adapter against the emulator, on both
//! backends: the session is made from the order and configuration only (S4, S5), its events and
//! its PaymentIntent's apply one payment whatever their order, copies and timing (W1), a session
//! reporting another amount is flagged (W6), an expired session releases the stock once (W5), and
//! money taken for an order canceled meanwhile goes back.

use kassa_app::ports::{CaptureMethod, Clock};
use kassa_testkit::shop::{CANCEL_URL, EmulatedShop, HostedPlaced, STOCK, SUCCESS_URL, UNIT};
use kassa_testkit::{TestDb, both_backends};
use serde_json::Value;

async fn shop(db: TestDb) -> EmulatedShop {
    EmulatedShop::new(db, CaptureMethod::Automatic).await
}

/// Delivers `events` twice each, newest first, each delivery a task of its own, all at once.
async fn deliver_duplicated_reordered_concurrently(shop: &EmulatedShop, events: &[Value]) {
    let secret = &shop.emulator.config().webhook_secret;
    let mut deliveries = tokio::task::JoinSet::new();
    for event in events.iter().rev().chain(events.iter()) {
        let body = event.to_string();
        let header = kassa_emulator::signature_header(secret, shop.clock.now_secs(), &body);
        let app = shop.app.clone();
        deliveries.spawn(async move {
            app.receive_webhook(body.as_bytes(), Some(&header))
                .await
                .map(|_| ())
        });
    }
    while let Some(outcome) = deliveries.join_next().await {
        outcome.expect("task").expect("recorded");
    }
}

/// A hosted checkout of `cart_id` (one MUG) with the Idempotency-Key `key`.
fn hosted_input(cart_id: &str, key: &str) -> kassa_app::checkout::CheckoutInput {
    kassa_app::checkout::CheckoutInput {
        cart_id: cart_id.to_owned(),
        key_scope: "publishable".into(),
        idempotency_key: Some(key.to_owned()),
        email: "ada@example.com".into(),
        shipping: kassa_app::ports::ShippingAddress {
            name: "Ada".into(),
            line1: "1 St".into(),
            city: "London".into(),
            postal_code: "N1".into(),
            country: "GB".into(),
        },
        expected_total_minor: UNIT,
        flow: kassa_app::checkout::CheckoutFlow::Hosted,
        actor: kassa_testkit::shop::actor(),
    }
}

async fn session(shop: &EmulatedShop, placed: &HostedPlaced) -> Value {
    shop.stripe(
        reqwest::Method::GET,
        &format!("/v1/checkout/sessions/{}", placed.session_id),
        &[],
    )
    .await
}

async fn risk_s5_risk_s4_the_session_is_made_from_the_order_and_configuration_only(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.hosted_checkout(&[("MUG", 2), ("TEE", 1)]).await;
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
    let session = session(&shop, &placed).await;
    // The return URLs are the configured ones, exactly (S5), and carry nothing but Stripe's
    // session placeholder: no order token, no secret (S4).
    assert_eq!(session["success_url"], SUCCESS_URL);
    assert_eq!(session["cancel_url"], CANCEL_URL);
    for url in [
        &session["success_url"],
        &session["cancel_url"],
        &session["url"],
    ] {
        let url = url.as_str().expect("url");
        assert!(!url.contains(&placed.order_token), "{url}");
        assert!(!url.contains("secret"), "{url}");
    }
    assert_eq!(session["url"].as_str(), Some(placed.url.as_str()));
    // Priced by Kassa from the frozen order, named for it.
    assert_eq!(session["amount_total"], 3 * UNIT);
    assert_eq!(session["currency"], "eur");
    assert_eq!(session["client_reference_id"], placed.order_id.as_str());
    assert_eq!(
        session["metadata"]["kassa_order_id"],
        placed.order_id.as_str()
    );
    let items = shop
        .stripe(
            reqwest::Method::GET,
            &format!("/v1/checkout/sessions/{}/line_items", placed.session_id),
            &[],
        )
        .await;
    let items: Vec<(String, i64, i64)> = items["data"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["description"].as_str().unwrap_or_default().to_owned(),
                item["price"]["unit_amount"].as_i64().unwrap_or(0),
                item["quantity"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        items,
        [
            ("Mug (MUG)".to_owned(), UNIT, 2),
            ("Tee (TEE)".to_owned(), UNIT, 1)
        ]
    );
    // The page closes when the stock is released, not before, not after.
    assert_eq!(session["expires_at"].as_i64(), Some(placed.expires_at));
    let reserved_until = shop
        .scalar("SELECT MIN(expires_at) FROM reservations WHERE status = 'held'")
        .await;
    assert_eq!(reserved_until, placed.expires_at);
    assert_eq!(
        shop.scalar("SELECT MAX(expires_at) FROM reservations WHERE status = 'held'")
            .await,
        placed.expires_at
    );
}
both_backends!(risk_s5_risk_s4_the_session_is_made_from_the_order_and_configuration_only);

async fn risk_g3_a_retried_hosted_checkout_makes_one_order_and_one_session(db: TestDb) {
    let shop = shop(db).await;
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "MUG", 1)
        .await
        .expect("line");
    let input = || hosted_input(&cart.id, "double-click");
    let mut clicks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (app, input) = (shop.app.clone(), input());
        clicks.spawn(async move { app.checkout(input).await });
    }
    let mut bodies = Vec::new();
    while let Some(answer) = clicks.join_next().await {
        // A click that meets another in flight is told to retry (409); the others replay.
        if let Ok(reply) = answer.expect("task") {
            bodies.push(reply.response.body);
        }
    }
    assert!(!bodies.is_empty());
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "{bodies:?}"
    );
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM orders").await, 1);
    let sessions = shop
        .stripe(reqwest::Method::GET, "/v1/checkout/sessions", &[])
        .await;
    assert_eq!(sessions["data"].as_array().map(Vec::len), Some(1));
    // The same key for the embedded flow is another request.
    let embedded = shop
        .app
        .checkout(kassa_app::checkout::CheckoutInput {
            flow: kassa_app::checkout::CheckoutFlow::Embedded,
            ..input()
        })
        .await;
    assert!(
        matches!(embedded, Err(kassa_app::AppError::IdempotencyKeyReused)),
        "{embedded:?}"
    );
}
both_backends!(risk_g3_a_retried_hosted_checkout_makes_one_order_and_one_session);

async fn risk_w1_session_and_intent_events_apply_one_payment(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.hosted_checkout(&[("MUG", 2)]).await;
    let paid = shop.pay_session(&placed.session_id, "pm_card_visa").await;
    assert_eq!(paid["payment_status"], "paid", "{paid}");
    let events = shop.events().await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"payment_intent.succeeded"), "{types:?}");
    assert!(types.contains(&"checkout.session.completed"), "{types:?}");
    deliver_duplicated_reordered_concurrently(&shop, &events).await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.stock("MUG").await, (STOCK - 2, 0, 2), "committed once");
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM outbox WHERE topic = 'order.paid'")
            .await,
        1
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE needs_attention IS NOT NULL")
            .await,
        0
    );
    let order = shop.app.order(&placed.order_id).await.expect("order");
    let payment = order.payment.expect("payment");
    assert_eq!(
        payment.payment_intent_id.as_deref(),
        paid["payment_intent"].as_str(),
        "the session's intent is recorded"
    );
}
both_backends!(risk_w1_session_and_intent_events_apply_one_payment);

/// The session's event alone pays the order (W5: it is handled, not left to the intent's);
/// the intent's events arriving afterwards change nothing.
async fn risk_w5_the_session_event_alone_pays_the_order(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.hosted_checkout(&[("TEE", 1)]).await;
    shop.pay_session(&placed.session_id, "pm_card_visa").await;
    let events = shop.events().await;
    let (session_events, intent_events): (Vec<Value>, Vec<Value>) =
        events.into_iter().partition(|e| {
            e["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("checkout."))
        });
    for event in &session_events {
        shop.deliver(event).await.expect("recorded");
    }
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.stock("TEE").await, (STOCK - 1, 0, 1));
    for event in &intent_events {
        shop.deliver(event).await.expect("recorded");
    }
    assert_eq!(shop.stock("TEE").await, (STOCK - 1, 0, 1));
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM outbox WHERE topic = 'order.paid'")
            .await,
        1
    );
}
both_backends!(risk_w5_the_session_event_alone_pays_the_order);

async fn risk_w6_a_session_reporting_another_amount_is_flagged_not_paid(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.hosted_checkout(&[("MUG", 1)]).await;
    shop.pay_session(&placed.session_id, "pm_card_visa").await;
    let mut completed = shop
        .events()
        .await
        .into_iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .expect("completed");
    completed["data"]["object"]["amount_total"] = Value::from(UNIT - 1);
    shop.deliver(&completed).await.expect("recorded");
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
    assert_eq!(
        shop.stock("MUG").await,
        (STOCK - 1, 1, 0),
        "nothing committed"
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE needs_attention LIKE 'amount_mismatch%'")
            .await,
        1
    );
}
both_backends!(risk_w6_a_session_reporting_another_amount_is_flagged_not_paid);

async fn risk_w5_an_expired_session_releases_the_stock_once(db: TestDb) {
    let shop = shop(db).await;
    // One customer tried a card that was declined (the session has an intent), one never
    // tried (it has none); both sessions expire.
    let tried = shop.hosted_checkout(&[("MUG", 2)]).await;
    let untried = shop.hosted_checkout(&[("MUG", 1)]).await;
    shop.pay_session(&tried.session_id, "pm_card_chargeDeclined")
        .await;
    assert_eq!(shop.stock("MUG").await, (STOCK - 3, 3, 0));
    for placed in [&tried, &untried] {
        let expired = shop.expire_session(&placed.session_id).await;
        assert_eq!(expired["status"], "expired", "{expired}");
    }
    let events = shop.events().await;
    deliver_duplicated_reordered_concurrently(&shop, &events).await;
    for placed in [&tried, &untried] {
        assert_eq!(shop.status(&placed.order_id).await, "canceled");
    }
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0), "released once");
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM outbox WHERE topic = 'order.canceled'")
            .await,
        2
    );
}
both_backends!(risk_w5_an_expired_session_releases_the_stock_once);

/// A delayed payment: complete and unpaid (nothing moves but the intent's `processing`), then
/// settled (paid) — or failed (back to awaiting a payment, the stock still held for the
/// janitor).
async fn risk_w5_a_delayed_payment_pays_when_it_settles_and_not_before(db: TestDb) {
    let shop = shop(db).await;
    let settles = shop.hosted_checkout(&[("MUG", 1)]).await;
    let fails = shop.hosted_checkout(&[("TEE", 1)]).await;
    shop.pay_session(&settles.session_id, "pm_bank_transfer_settles")
        .await;
    shop.pay_session(&fails.session_id, "pm_bank_transfer_fails")
        .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&settles.order_id).await, "pending_payment");
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 1, 0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let types: Vec<String> = shop
            .events()
            .await
            .iter()
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect();
        if types
            .iter()
            .any(|t| t == "checkout.session.async_payment_succeeded")
            && types
                .iter()
                .any(|t| t == "checkout.session.async_payment_failed")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{types:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    deliver_duplicated_reordered_concurrently(&shop, &shop.events().await).await;
    assert_eq!(shop.status(&settles.order_id).await, "paid");
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 0, 1));
    assert_eq!(shop.status(&fails.order_id).await, "pending_payment");
    assert_eq!(shop.stock("TEE").await, (STOCK - 1, 1, 0));
    let order = shop.app.order(&fails.order_id).await.expect("order");
    let payment = order.payment.expect("payment");
    assert_eq!(payment.status.as_str(), "requires_payment_method");
}
both_backends!(risk_w5_a_delayed_payment_pays_when_it_settles_and_not_before);

/// The stock hold of an abandoned hosted checkout runs out: the janitor expires the page at
/// the provider first (nobody can pay it any more), then the order is canceled and its stock
/// released — once, however the session's own event arrives afterwards (risk G4 for sessions).
async fn risk_g4_the_janitor_expires_an_abandoned_page_at_the_provider_first(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.hosted_checkout(&[("MUG", 2)]).await;
    shop.clock
        .advance(placed.expires_at - shop.clock.now_secs() + 1);
    let report = shop.app.run_janitor().await.expect("janitor");
    assert_eq!(report.canceled, 1, "{report:?}");
    assert_eq!(session(&shop, &placed).await["status"], "expired");
    assert_eq!(shop.status(&placed.order_id).await, "canceled");
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0));
    let refused = shop.pay_session(&placed.session_id, "pm_card_visa").await;
    assert_eq!(refused["error"]["code"], "checkout_session_not_open");
    deliver_duplicated_reordered_concurrently(&shop, &shop.events().await).await;
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0), "released once");
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM outbox WHERE topic = 'order.canceled'")
            .await,
        1
    );
}
both_backends!(risk_g4_the_janitor_expires_an_abandoned_page_at_the_provider_first);

/// The customer paid just before the hold ran out and its events are late: the janitor finds
/// the page paid and applies it; nothing is canceled (risk P9 for sessions).
async fn risk_p9_a_page_paid_before_the_janitor_came_is_applied_not_canceled(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.hosted_checkout(&[("TEE", 1)]).await;
    shop.pay_session(&placed.session_id, "pm_card_visa").await;
    shop.clock
        .advance(placed.expires_at - shop.clock.now_secs() + 1);
    let report = shop.app.run_janitor().await.expect("janitor");
    assert_eq!(
        (report.canceled, report.paid_meanwhile),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.stock("TEE").await, (STOCK - 1, 0, 1));
}
both_backends!(risk_p9_a_page_paid_before_the_janitor_came_is_applied_not_canceled);

/// Canceling a hosted order ends its page at the provider first; a page the customer paid
/// while the cancel ran becomes a refund with restock, never a lost payment (risk P7 for
/// sessions).
async fn risk_p7_canceling_a_hosted_order_ends_its_page_first(db: TestDb) {
    let shop = shop(db).await;
    let operator = kassa_app::order_commands::Requester::Operator;
    let actor = kassa_testkit::shop::actor();
    let abandoned = shop.hosted_checkout(&[("MUG", 1)]).await;
    let canceled = shop
        .app
        .cancel_order(&abandoned.order_id, &operator, &actor)
        .await
        .expect("cancel");
    assert_eq!(canceled.status.as_str(), "canceled");
    assert_eq!(session(&shop, &abandoned).await["status"], "expired");
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0));

    let paid_meanwhile = shop.hosted_checkout(&[("MUG", 2)]).await;
    shop.pay_session(&paid_meanwhile.session_id, "pm_card_visa")
        .await;
    let refunded = shop
        .app
        .cancel_order(&paid_meanwhile.order_id, &operator, &actor)
        .await
        .expect("cancel");
    assert_eq!(refunded.status.as_str(), "refunded");
    let intent = session(&shop, &paid_meanwhile).await["payment_intent"]
        .as_str()
        .expect("intent")
        .to_owned();
    assert_eq!(shop.provider_refunds(&intent).await, (1, 2 * UNIT));
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0), "restocked");
}
both_backends!(risk_p7_canceling_a_hosted_order_ends_its_page_first);

/// With manual capture a session's events report an authorization at most: the order is
/// `authorized` and its stock still held until Kassa captures — even if a session event says
/// `paid` (risk W1: only a capture takes the money).
async fn risk_w1_a_manual_capture_session_authorizes_and_never_pays_by_itself(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Manual).await;
    let placed = shop.hosted_checkout(&[("MUG", 1)]).await;
    let completed = shop.pay_session(&placed.session_id, "pm_card_visa").await;
    assert_eq!(completed["payment_status"], "unpaid", "{completed}");
    let mut events = shop.events().await;
    // A session event claiming the money was taken changes nothing either.
    let mut claims_paid = events
        .iter()
        .find(|e| e["type"] == "checkout.session.completed")
        .cloned()
        .expect("completed");
    claims_paid["id"] = Value::from("evt_claims_paid");
    claims_paid["data"]["object"]["payment_status"] = Value::from("paid");
    events.push(claims_paid);
    deliver_duplicated_reordered_concurrently(&shop, &events).await;
    assert_eq!(shop.status(&placed.order_id).await, "authorized");
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 1, 0), "held, not sold");
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE captured_amount > 0")
            .await,
        0
    );
}
both_backends!(risk_w1_a_manual_capture_session_authorizes_and_never_pays_by_itself);

/// Stripe was down when the page was to be created (outcome unknown): the client's retry with
/// the same key minutes later still gets its page, the one order, the one reservation (risk
/// P1 for sessions).
async fn risk_p1_a_hosted_checkout_retried_after_an_outage_gets_its_page(db: TestDb) {
    let shop = shop(db).await;
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "MUG", 1)
        .await
        .expect("line");
    shop.fault(
        "POST /v1/checkout/sessions",
        serde_json::json!([{"status": 500}, {"status": 500}]),
    )
    .await;
    let input = || hosted_input(&cart.id, "outage");
    let first = shop.app.checkout(input()).await;
    assert!(
        matches!(first, Err(kassa_app::AppError::ProviderUnavailable { .. })),
        "{first:?}"
    );
    // Five minutes pass for Kassa and for Stripe alike.
    shop.clock.advance(300);
    shop.control(
        "/_emulator/clock/advance",
        serde_json::json!({"seconds": 300}),
    )
    .await;
    let retried = shop.app.checkout(input()).await.expect("retried");
    assert_eq!(retried.response.status, 201, "{}", retried.response.body);
    let body: Value = serde_json::from_str(&retried.response.body).expect("json");
    assert!(
        body["checkout_session"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("cs_")),
        "{body}"
    );
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 1, 0));
}
both_backends!(risk_p1_a_hosted_checkout_retried_after_an_outage_gets_its_page);
