//! Risk G7: the breaker in front of Stripe, against the emulator through the real adapter. A hung
//! Stripe (the emulator's `hang` fault) opens it after a run of unknown outcomes; while it is
//! open, new checkouts are refused at once — no call reaches the emulator (its request count
//! says so, no clock is read) and nothing is reserved — while started work, webhooks and
//! reconciliation go on; after the cool-down (the test clock moved) a probe checkout closes it.

use kassa_app::AppError;
use kassa_app::checkout::CheckoutFlow;
use kassa_app::ports::CaptureMethod;
use kassa_domain::breaker::BreakerRule;
use kassa_testkit::shop::{EmulatedShop, STOCK, UNIT, checkout_input};
use kassa_testkit::{TEST_PUBLISHABLE_KEY, TestDb, both_backends};
use serde_json::{Value, json};

/// Three unknown outcomes open it for two minutes: longer than the checkout lock (60 s), so the
/// completer's turn comes while it is still open.
const RULE: BreakerRule = BreakerRule {
    failures: 3,
    cooldown_secs: 120,
    probes: 1,
};
const LINES: &[(&str, i64)] = &[("MUG", 1)];

async fn breaker_shop(db: TestDb) -> EmulatedShop {
    EmulatedShop::with_settings(db, CaptureMethod::Automatic, |settings| {
        settings.stripe_breaker = RULE;
    })
    .await
}

/// Stripe hangs on `checkouts` PaymentIntent creates: each is tried twice by the test adapter,
/// then its outcome is unknown.
async fn hang_creates(shop: &EmulatedShop, checkouts: usize) {
    let hangs = vec![json!({"hang_ms": 0}); checkouts * 2];
    shop.fault("POST /v1/payment_intents", Value::Array(hangs))
        .await;
}

/// Checkouts whose creates hang until the breaker opens; their carts.
async fn open_the_breaker(shop: &EmulatedShop) -> Vec<String> {
    hang_creates(shop, 3).await;
    let mut carts = Vec::new();
    for _ in 0..RULE.failures {
        let cart = shop.app.create_cart("eur").await.expect("cart");
        shop.app
            .add_cart_line(&cart.id, "MUG", 1)
            .await
            .expect("line");
        let hung = shop.checkout_cart(&cart.id, LINES, "hung").await;
        assert!(
            matches!(hung, Err(AppError::ProviderUnavailable { .. })),
            "{hung:?}"
        );
        carts.push(cart.id);
    }
    assert!(shop.app.stripe_breaker_open(), "3 unknown outcomes open it");
    carts
}

fn assert_refused_at_once(outcome: Result<kassa_testkit::shop::Placed, AppError>) {
    match outcome {
        Err(AppError::ProviderUnavailable { retry_after_secs }) => {
            assert!(
                (1..=RULE.cooldown_secs).contains(&retry_after_secs),
                "Retry-After {retry_after_secs}"
            );
        }
        other => panic!("expected the open breaker's 503, got {other:?}"),
    }
}

async fn risk_g7_an_open_breaker_refuses_new_checkouts_without_calling_stripe(db: TestDb) {
    let shop = breaker_shop(db).await;
    let hung = open_the_breaker(&shop).await;
    // The hung checkouts' orders wait at their recovery point with their stock held.
    let orders = shop.scalar("SELECT COUNT(*) FROM orders").await;
    assert_eq!(orders, 3);
    assert_eq!(shop.stock("MUG").await, (STOCK - 3, 3, 0));
    let calls = shop.provider_calls().await;

    // Open: new checkouts are refused at once, in the app …
    for _ in 0..3 {
        assert_refused_at_once(shop.try_checkout(LINES, "refused").await);
    }
    // … the hosted page's flow too …
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "MUG", 1)
        .await
        .expect("line");
    let hosted = shop
        .app
        .checkout(checkout_input(
            &cart.id,
            UNIT,
            "hosted",
            CheckoutFlow::Hosted,
        ))
        .await;
    assert!(
        matches!(hosted, Err(AppError::ProviderUnavailable { .. })),
        "{hosted:?}"
    );
    // … and over HTTP: 503 provider_unavailable with Retry-After.
    let address = shop.serve().await;
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "MUG", 1)
        .await
        .expect("line");
    let answer = reqwest::Client::new()
        .post(format!("http://{address}/v1/carts/{}/checkout", cart.id))
        .bearer_auth(TEST_PUBLISHABLE_KEY)
        .header("Idempotency-Key", "over-http")
        .json(&json!({
            "email": "grace@example.com",
            "shipping_address": {"name": "Grace Hopper", "line1": "1 Compiler Way",
                                 "city": "Arlington", "postal_code": "22201", "country": "US"},
            "expected_total": UNIT,
        }))
        .send()
        .await
        .expect("Kassa answers");
    assert_eq!(answer.status().as_u16(), 503);
    let retry_after = answer
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok());
    assert!(
        retry_after.is_some_and(|secs| (1..=RULE.cooldown_secs).contains(&secs)),
        "Retry-After {retry_after:?}"
    );
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["code"], "provider_unavailable", "{body}");

    assert_eq!(
        shop.provider_calls().await,
        calls,
        "no refused checkout reached Stripe"
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders").await,
        orders,
        "no order was placed"
    );
    assert_eq!(
        shop.stock("MUG").await,
        (STOCK - 3, 3, 0),
        "nothing was reserved"
    );

    // Started work goes on while it is open. Stripe is back: a customer's retry of a placed
    // checkout (its key) finishes it …
    shop.clear_faults().await;
    let retried = shop
        .checkout_cart(&hung[0], LINES, "hung")
        .await
        .expect("a retry of a placed checkout is not refused");
    assert!(!retried.intent_id.is_empty());
    // … and the completer finishes the others once their lock has run out.
    shop.clock.advance(61);
    let driven = shop
        .app
        .complete_stalled_checkouts(10)
        .await
        .expect("completer");
    assert_eq!(driven, 2);
    // Their answers do not close it: only probes decide, after the cool-down.
    assert!(shop.app.stripe_breaker_open());
    let calls = shop.provider_calls().await;
    assert_refused_at_once(shop.try_checkout(LINES, "still-open").await);
    assert_eq!(shop.provider_calls().await, calls);

    // The cool-down is over: the next checkout is the probe; it reaches Stripe, succeeds and
    // closes the breaker, and checkouts go through again.
    shop.clock.advance(RULE.cooldown_secs);
    shop.try_checkout(LINES, "probe")
        .await
        .expect("the probe checkout succeeds");
    assert!(
        shop.provider_calls().await > calls,
        "the probe called Stripe"
    );
    assert!(!shop.app.stripe_breaker_open(), "its answer closes it");
    shop.try_checkout(LINES, "closed")
        .await
        .expect("a checkout after it closed");
    // Three hung and finished, the probe, the last one.
    assert_eq!(shop.stock("MUG").await, (STOCK - 5, 5, 0));
}
both_backends!(risk_g7_an_open_breaker_refuses_new_checkouts_without_calling_stripe);

/// A probe that meets a Stripe still down opens the breaker for another cool-down.
async fn risk_g7_a_failed_probe_opens_it_again(db: TestDb) {
    let shop = breaker_shop(db).await;
    open_the_breaker(&shop).await;
    shop.clock.advance(RULE.cooldown_secs);
    hang_creates(&shop, 1).await;
    let calls = shop.provider_calls().await;
    let probe = shop.try_checkout(LINES, "probe").await;
    assert!(
        matches!(probe, Err(AppError::ProviderUnavailable { .. })),
        "{probe:?}"
    );
    assert_eq!(
        shop.provider_calls().await,
        calls + 2,
        "the probe called (twice)"
    );
    assert!(shop.app.stripe_breaker_open());
    assert_refused_at_once(shop.try_checkout(LINES, "refused").await);
    assert_eq!(shop.provider_calls().await, calls + 2);
}
both_backends!(risk_g7_a_failed_probe_opens_it_again);

/// While it is open, Stripe's events still apply, and reconciliation still asks Stripe.
async fn risk_g7_webhooks_and_reconciliation_go_on_while_it_is_open(db: TestDb) {
    let shop = breaker_shop(db).await;
    let by_webhook = shop.checkout(LINES).await;
    let by_reconciliation = shop.checkout(LINES).await;
    shop.confirm(&by_webhook, "pm_card_visa").await;
    let events = shop.events().await;
    open_the_breaker(&shop).await;
    shop.clear_faults().await;

    for event in &events {
        shop.deliver(event).await.expect("recorded");
    }
    assert_eq!(shop.status(&by_webhook.order_id).await, "paid");

    // Its events are never delivered: reconciliation finds the payment at Stripe.
    shop.confirm(&by_reconciliation, "pm_card_visa").await;
    let calls = shop.provider_calls().await;
    shop.app
        .reconcile(&kassa_app::reconcile::Quietly)
        .await
        .expect("reconciled");
    assert!(shop.provider_calls().await > calls, "reconciliation asked");
    assert_eq!(shop.status(&by_reconciliation.order_id).await, "paid");
    assert!(
        shop.app.stripe_breaker_open(),
        "and new checkouts still wait"
    );
}
both_backends!(risk_g7_webhooks_and_reconciliation_go_on_while_it_is_open);
