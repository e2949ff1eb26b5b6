//! Reconciliation against the emulator on both backends (risks R1, W4): a webhook that never
//! arrived is recovered, from the payment's own state and from the provider's event list.

use kassa_app::ports::CaptureMethod;
use kassa_app::reconcile::Quietly;
use kassa_testkit::shop::{EmulatedShop, STOCK};
use kassa_testkit::{TestDb, both_backends};

async fn risk_r1_a_payment_whose_webhook_never_came_is_made_paid(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    shop.confirm(&placed, "pm_card_visa").await;
    // No webhook is delivered: the endpoint missed them all.
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
    let report = shop.app.reconcile(&Quietly).await.expect("reconciled");
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(
        shop.stock("MUG").await,
        (STOCK - 2, 0, 2),
        "stock committed once"
    );
    assert_eq!(report.payments_checked, 1);
    assert!(report.differences.is_empty(), "{report:?}");
    // A second run finds nothing left in motion and changes nothing.
    let again = shop.app.reconcile(&Quietly).await.expect("reconciled");
    assert_eq!((again.payments_checked, again.events_recovered), (0, 0));
    assert_eq!(shop.stock("MUG").await, (STOCK - 2, 0, 2));
}
both_backends!(risk_r1_a_payment_whose_webhook_never_came_is_made_paid);

async fn risk_w4_missed_events_are_recovered_from_the_providers_list(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.paid(&[("MUG", 1)]).await;
    // A refund made in the provider's dashboard; its webhooks never arrive.
    let refund = shop
        .stripe(
            reqwest::Method::POST,
            "/v1/refunds",
            &[
                ("payment_intent", placed.intent_id.as_str()),
                ("amount", "250"),
            ],
        )
        .await;
    assert_eq!(refund["status"], "succeeded");
    let report = shop.app.reconcile(&Quietly).await.expect("reconciled");
    assert!(report.events_recovered >= 2, "{report:?}");
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(
        (order.status.as_str(), order.refunded_amount_minor),
        ("partially_refunded", 250)
    );
    assert_eq!(order.refunds.len(), 1, "recorded once");
    // Read again, the same events are already in the inbox: nothing recovered twice.
    let again = shop.app.reconcile(&Quietly).await.expect("reconciled");
    assert_eq!(again.events_recovered, 0);
    assert_eq!(
        shop.app
            .order(&placed.order_id)
            .await
            .expect("order")
            .refunds
            .len(),
        1
    );
}
both_backends!(risk_w4_missed_events_are_recovered_from_the_providers_list);

/// A hosted page paid, and one expired, whose webhooks never came and whose payments have no
/// PaymentIntent known to Kassa: reconciliation asks about their sessions (risk R1 for hosted
/// checkout), so the one is paid and the other canceled with its stock released.
async fn risk_r1_hosted_pages_whose_webhooks_never_came_are_settled(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let paid = shop.hosted_checkout(&[("MUG", 1)]).await;
    let abandoned = shop.hosted_checkout(&[("TEE", 2)]).await;
    shop.pay_session(&paid.session_id, "pm_card_visa").await;
    shop.expire_session(&abandoned.session_id).await;
    let report = shop.app.reconcile(&Quietly).await.expect("reconciled");
    assert_eq!(
        report.payments_checked, 2,
        "both pages asked about: {report:?}"
    );
    assert!(report.differences.is_empty(), "{report:?}");
    assert_eq!(shop.status(&paid.order_id).await, "paid");
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 0, 1));
    assert_eq!(shop.status(&abandoned.order_id).await, "canceled");
    assert_eq!(shop.stock("TEE").await, (STOCK, 0, 0));
}
both_backends!(risk_r1_hosted_pages_whose_webhooks_never_came_are_settled);
