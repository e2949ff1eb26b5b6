//! The janitor against the emulator on both backends: abandoned checkouts release their stock
//! only after the provider confirmed the cancel (G9), a customer mid-payment keeps it and a
//! payment that succeeded is never canceled (P9), idle carts expire without touching a payment
//! in flight (G4).

use kassa_app::AppError;
use kassa_app::janitor::Expiry;
use kassa_app::order_commands::OPERATION_RESUME_AFTER_SECS;
use kassa_app::ports::CaptureMethod;
use kassa_testkit::shop::{EmulatedShop, STOCK};
use kassa_testkit::{TestDb, both_backends};
use serde_json::json;

/// The default hold of an unpaid checkout, and of an idle cart.
const HOLD_SECS: i64 = 1_800;
const CART_TTL_SECS: i64 = 86_400;

async fn shop(db: TestDb) -> EmulatedShop {
    EmulatedShop::new(db, CaptureMethod::Automatic).await
}

async fn risk_g9_an_abandoned_checkout_is_canceled_at_the_provider_before_its_stock_returns(
    db: TestDb,
) {
    let shop = shop(db).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    shop.clock.advance(HOLD_SECS - 1);
    assert_eq!(
        shop.app.run_janitor().await.expect("round").canceled,
        0,
        "not yet"
    );
    shop.clock.advance(1);
    // The provider cannot be reached: nothing is released while the intent can still be paid.
    shop.fault(
        "POST /v1/payment_intents/*/cancel",
        json!([{"status": 500}, {"status": 500}]),
    )
    .await;
    let unreachable = shop.app.expire_checkout(&placed.order_id).await;
    assert!(
        matches!(unreachable, Err(AppError::ProviderUnavailable { .. })),
        "{unreachable:?}"
    );
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
    assert_eq!(shop.stock("MUG").await, (STOCK - 2, 2, 0));
    // The next round, after the outage: canceled there, then here.
    shop.clock.advance(OPERATION_RESUME_AFTER_SECS);
    assert_eq!(shop.app.run_janitor().await.expect("round").canceled, 1);
    assert_eq!(shop.intent(&placed.intent_id).await["status"], "canceled");
    assert_eq!(shop.status(&placed.order_id).await, "canceled");
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0));
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE pending_operation IS NOT NULL")
            .await,
        0
    );
}
both_backends!(risk_g9_an_abandoned_checkout_is_canceled_at_the_provider_before_its_stock_returns);

async fn risk_p9_a_hold_expiring_never_takes_stock_from_a_payment_in_progress(db: TestDb) {
    let shop = shop(db).await;
    // On the 3-D Secure page when the hold runs out: the hold is extended.
    let authenticating = shop.checkout(&[("MUG", 1)]).await;
    shop.confirm(&authenticating, "pm_card_authenticationRequired")
        .await;
    shop.deliver_events().await;
    shop.clock.advance(HOLD_SECS);
    assert_eq!(
        shop.app
            .expire_checkout(&authenticating.order_id)
            .await
            .expect("round"),
        Expiry::Extended
    );
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 1, 0));
    shop.control(
        &format!(
            "/_emulator/payment_intents/{}/authenticate",
            authenticating.intent_id
        ),
        json!({"outcome": "succeed"}),
    )
    .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&authenticating.order_id).await, "paid");
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 0, 1));

    // Paid, but its webhook never came, as the hold ran out: applied, never canceled.
    let paid = shop.checkout(&[("TEE", 2)]).await;
    let confirmed = shop.confirm(&paid, "pm_card_visa").await;
    assert_eq!(confirmed["status"], "succeeded");
    shop.clock.advance(HOLD_SECS);
    let report = shop.app.run_janitor().await.expect("round");
    assert_eq!((report.canceled, report.paid_meanwhile), (0, 1));
    assert_eq!(shop.status(&paid.order_id).await, "paid");
    assert_eq!(shop.intent(&paid.intent_id).await["status"], "succeeded");
    assert_eq!(shop.stock("TEE").await, (STOCK - 2, 0, 2));
}
both_backends!(risk_p9_a_hold_expiring_never_takes_stock_from_a_payment_in_progress);

async fn risk_g4_idle_carts_expire_but_a_checked_out_cart_never_breaks_its_payment(db: TestDb) {
    let shop = shop(db).await;
    let idle = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&idle.id, "TEE", 1)
        .await
        .expect("line");
    let on_payment_page = shop.checkout(&[("MUG", 1)]).await;
    shop.confirm(&on_payment_page, "pm_card_authenticationRequired")
        .await;
    shop.deliver_events().await;
    shop.clock.advance(CART_TTL_SECS);
    let report = shop.app.run_janitor().await.expect("round");
    assert_eq!(report.carts_expired, 1, "{report:?}");
    assert!(matches!(
        shop.app.cart_view(&idle.id).await,
        Err(AppError::NotFound { .. })
    ));
    // The checked-out cart's order holds everything: the payment completes as usual.
    shop.control(
        &format!(
            "/_emulator/payment_intents/{}/authenticate",
            on_payment_page.intent_id
        ),
        json!({"outcome": "succeed"}),
    )
    .await;
    shop.deliver_events().await;
    let order = shop
        .app
        .order(&on_payment_page.order_id)
        .await
        .expect("order");
    assert_eq!(order.status.as_str(), "paid");
    assert_eq!(order.lines.len(), 1);
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 0, 1));
}
both_backends!(risk_g4_idle_carts_expire_but_a_checked_out_cart_never_breaks_its_payment);
