//! Refunds (risk P6) with the real Stripe adapter against the emulator, on both backends: never
//! more than captured (locally and at the provider), one row whatever order the webhook and the
//! answer arrive in, a failed refund frees its amount, restock happens once, none while disputed.
//! Webhooks are the emulator's own events, signed with its secret and fed to Kassa's endpoint
//! logic.

use std::sync::Arc;
use std::time::Duration;

use kassa_app::AppError;
use kassa_app::order_commands::Requester;
use kassa_app::ports::CaptureMethod;
use kassa_app::refunds::RefundInput;
use kassa_testkit::shop::{EmulatedShop, UNIT, actor};
use kassa_testkit::{TestDb, both_backends};
use serde_json::json;

async fn shop(db: TestDb) -> EmulatedShop {
    EmulatedShop::new(db, CaptureMethod::Automatic).await
}

fn refund(order_id: &str, key: &str, amount: Option<i64>, restock: bool) -> RefundInput {
    RefundInput {
        order_id: order_id.to_owned(),
        key_scope: "secret".into(),
        idempotency_key: Some(key.to_owned()),
        amount_minor: amount,
        reason: Some("requested_by_customer".into()),
        restock,
        actor: actor(),
    }
}

/// A paid order of `quantity` mugs: (order id, PaymentIntent id).
async fn paid_order(shop: &EmulatedShop, quantity: i64) -> (String, String) {
    let placed = shop.paid(&[("MUG", quantity)]).await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    (placed.order_id, placed.intent_id)
}

async fn risk_p6_concurrent_partial_refunds_never_exceed_the_capture(db: TestDb) {
    let shop = Arc::new(shop(db).await);
    let (order_id, intent) = paid_order(&shop, 2).await;
    let captured = 2 * UNIT;
    // 20 refunds of 200 each ask for 4000 of the 2500 captured, all at once.
    let requests: Vec<_> = (0..20)
        .map(|n| {
            let shop = shop.clone();
            let order_id = order_id.clone();
            tokio::spawn(async move {
                let input = refund(&order_id, &format!("partial-{n}"), Some(200), false);
                shop.app.create_refund(input).await
            })
        })
        .collect();
    let (mut granted, mut refused) = (0, 0);
    for request in requests {
        match request.await.expect("task") {
            Ok(refund) => {
                assert_eq!(refund.status.as_str(), "succeeded");
                granted += 1;
            }
            Err(AppError::AmountExceedsRefundable { refundable_minor }) => {
                assert!(refundable_minor < 200);
                refused += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (granted, refused),
        (12, 8),
        "12 × 200 fit in 2500, the 13th does not"
    );
    let kassa_total = shop
        .scalar("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE status = 'succeeded'")
        .await;
    let (count, provider_total) = shop.provider_refunds(&intent).await;
    assert!(kassa_total <= captured && provider_total <= captured);
    assert_eq!(
        (kassa_total, count, provider_total),
        (2400, 12, 2400),
        "Kassa agrees with the provider"
    );
    shop.deliver_events().await;
    let order = shop.app.order(&order_id).await.expect("order");
    assert_eq!(
        (order.status.as_str(), order.refunded_amount_minor),
        ("partially_refunded", 2400)
    );
    // The rest, asked for without an amount, empties it.
    let rest = shop
        .app
        .create_refund(refund(&order_id, "rest", None, false))
        .await
        .expect("rest");
    assert_eq!(rest.amount_minor, 100);
    assert_eq!(shop.status(&order_id).await, "refunded");
    let again = shop
        .app
        .create_refund(refund(&order_id, "more", Some(1), false))
        .await;
    assert!(matches!(
        again,
        Err(AppError::InvalidState { .. } | AppError::AmountExceedsRefundable { .. })
    ));
}
both_backends!(risk_p6_concurrent_partial_refunds_never_exceed_the_capture);

async fn risk_p6_a_webhook_before_the_answer_makes_one_refund(db: TestDb) {
    let shop = Arc::new(shop(db).await);
    let (order_id, intent) = paid_order(&shop, 1).await;
    // The provider makes the refund and its answer is lost; the adapter's retry meets a 500.
    shop.fault(
        "POST /v1/refunds",
        json!(["lose_response", {"status": 500}]),
    )
    .await;
    let request = {
        let shop = shop.clone();
        let order_id = order_id.clone();
        tokio::spawn(async move {
            shop.app
                .create_refund(refund(&order_id, "lost", Some(500), false))
                .await
        })
    };
    // Meanwhile the provider's webhooks about it arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shop.provider_refunds(&intent).await.0 == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the emulator made the refund"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shop.deliver_events().await;
    let first = request.await.expect("task");
    assert!(
        matches!(first, Err(AppError::ProviderUnavailable { .. })),
        "{first:?}"
    );
    // The client retries with the same key: the refund is known, nothing is sent again.
    let retried = shop
        .app
        .create_refund(refund(&order_id, "lost", Some(500), false))
        .await
        .expect("retry");
    assert_eq!(
        (retried.status.as_str(), retried.amount_minor),
        ("succeeded", 500)
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM refunds").await,
        1,
        "one row"
    );
    assert_eq!(
        shop.provider_refunds(&intent).await,
        (1, 500),
        "one refund at the provider"
    );
    assert_eq!(shop.status(&order_id).await, "partially_refunded");
}
both_backends!(risk_p6_a_webhook_before_the_answer_makes_one_refund);

async fn risk_p6_a_failed_refund_frees_its_amount_and_restock_happens_once(db: TestDb) {
    let shop = shop(db).await;
    let (order_id, _) = paid_order(&shop, 2).await;
    shop.fault("POST /v1/refunds", json!([{"status": 400}]))
        .await;
    let failed = shop
        .app
        .create_refund(refund(&order_id, "refused", None, true))
        .await
        .expect("recorded");
    assert_eq!(failed.status.as_str(), "failed");
    assert!(failed.failure_reason.is_some());
    assert_eq!(shop.status(&order_id).await, "paid", "nothing was refunded");
    // The whole amount is free again: a full refund with restock goes through.
    let full = shop
        .app
        .create_refund(refund(&order_id, "full", None, true))
        .await
        .expect("refund");
    assert_eq!(
        (full.status.as_str(), full.amount_minor),
        ("succeeded", 2 * UNIT)
    );
    shop.deliver_events().await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&order_id).await, "refunded");
    let level = &shop.app.inventory("MUG").await.expect("inventory")[0].stock;
    assert_eq!(
        (level.on_hand, level.reserved, level.committed),
        (10, 0, 0),
        "returned once"
    );
    assert_eq!(level.available(), 10);
    let partial_restock = shop
        .app
        .create_refund(refund(&order_id, "again", Some(1), true))
        .await;
    assert!(partial_restock.is_err());
}
both_backends!(risk_p6_a_failed_refund_frees_its_amount_and_restock_happens_once);

async fn risk_p6_no_refund_while_a_dispute_is_open(db: TestDb) {
    let shop = shop(db).await;
    let (order_id, intent) = paid_order(&shop, 1).await;
    shop.control(
        &format!("/_emulator/payment_intents/{intent}/dispute"),
        json!({}),
    )
    .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&order_id).await, "disputed");
    let refused = shop
        .app
        .create_refund(refund(&order_id, "during-dispute", None, false))
        .await;
    assert!(
        matches!(refused, Err(AppError::InvalidState { .. })),
        "{refused:?}"
    );
    // Same key, same request, after a refusal: refused again (a refusal records nothing).
    let again = shop
        .app
        .create_refund(refund(&order_id, "during-dispute", None, false))
        .await;
    assert!(
        matches!(again, Err(AppError::InvalidState { .. })),
        "{again:?}"
    );
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM refunds").await, 0);
}
both_backends!(risk_p6_no_refund_while_a_dispute_is_open);

/// A refund that succeeds and then fails at the provider (`pm_card_refundFail`) frees its
/// amount again and flags the order for a person; it is never counted as money returned.
async fn risk_p6_a_refund_that_fails_later_frees_its_amount(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    shop.confirm(&placed, "pm_card_refundFail").await;
    shop.deliver_events().await;
    let first = shop
        .app
        .create_refund(refund(&placed.order_id, "will-fail", Some(500), false))
        .await
        .expect("refund");
    assert_eq!(first.status.as_str(), "succeeded");
    until_refunds_fail(&shop, &placed.intent_id).await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(order.refunds[0].status.as_str(), "failed");
    assert_eq!(
        order.refunded_amount_minor, 0,
        "nothing was returned after all"
    );
    assert!(
        order
            .needs_attention
            .as_deref()
            .is_some_and(|reason| reason.starts_with("refund_reversed")),
        "{:?}",
        order.needs_attention
    );
    let again = shop
        .app
        .create_refund(refund(&placed.order_id, "again", None, false))
        .await
        .expect("refund");
    assert_eq!(
        again.amount_minor,
        2 * UNIT,
        "the failed amount is refundable again"
    );
}
both_backends!(risk_p6_a_refund_that_fails_later_frees_its_amount);

/// Has the emulator fail the refunds of `intent` now (`pm_card_refundFail` fails them a moment
/// after they succeed, as Stripe's test card does), then delivers its events.
async fn until_refunds_fail(shop: &EmulatedShop, intent: &str) {
    shop.control("/_emulator/settle", json!({})).await;
    assert_eq!(
        shop.provider_refunds(intent).await.1,
        0,
        "the emulator failed the refunds"
    );
    shop.deliver_events().await;
}

/// A whole refund that fails after it succeeded takes the order back to `paid` (a `refunded`
/// status always means the money went back), frees the amount, and is reported if it does not.
async fn risk_p6_an_order_refunded_in_full_whose_refund_fails_is_paid_again(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    shop.confirm(&placed, "pm_card_refundFail").await;
    shop.deliver_events().await;
    let whole = shop
        .app
        .create_refund(refund(&placed.order_id, "whole", None, false))
        .await
        .expect("refund");
    assert_eq!(whole.status.as_str(), "succeeded");
    assert_eq!(shop.status(&placed.order_id).await, "refunded");
    until_refunds_fail(&shop, &placed.intent_id).await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(
        (order.status.as_str(), order.refunded_amount_minor),
        ("paid", 0),
        "the status follows the money actually returned"
    );
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
    let again = shop
        .app
        .create_refund(refund(&placed.order_id, "whole-again", None, false))
        .await
        .expect("the failed amount is refundable again");
    assert_eq!(again.amount_minor, 2 * UNIT);
    // A `refunded` status without the money, written by hand, is reported (invariant 4).
    shop.tamper(
        "UPDATE orders SET status = 'refunded', refunded_amount = 0 WHERE id = $1",
        &[&placed.order_id],
    )
    .await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(
        report.violations.iter().any(|v| v.invariant == 4
            && v.what.contains("without the money")
            && v.ids.contains(&placed.order_id)),
        "{:#?}",
        report.violations
    );
}
both_backends!(risk_p6_an_order_refunded_in_full_whose_refund_fails_is_paid_again);

/// A partial refund that fails after it succeeded leaves the order `paid`, not
/// `partially_refunded` with nothing refunded.
async fn risk_p6_a_partial_refund_that_fails_leaves_the_order_paid(db: TestDb) {
    let shop = shop(db).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    shop.confirm(&placed, "pm_card_refundFail").await;
    shop.deliver_events().await;
    shop.app
        .create_refund(refund(&placed.order_id, "part", Some(500), false))
        .await
        .expect("refund");
    assert_eq!(shop.status(&placed.order_id).await, "partially_refunded");
    until_refunds_fail(&shop, &placed.intent_id).await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
}
both_backends!(risk_p6_a_partial_refund_that_fails_leaves_the_order_paid);

/// A cancel after capture answers `refunded` when Stripe accepts its refund; when that refund
/// fails later the order is `paid` again and flagged for a person, and a second cancel asks
/// Stripe for a new refund. The stock the cancel returned stays returned: it may have been sold
/// again since, and the goods of a canceled order were never shipped — only the money is owed.
async fn risk_p5_a_cancel_whose_refund_fails_later_says_so_and_can_be_retried(db: TestDb) {
    let shop = shop(db).await;
    let before = shop.stock("MUG").await;
    let placed = shop.checkout(&[("MUG", 1)]).await;
    shop.confirm(&placed, "pm_card_refundFail").await;
    shop.deliver_events().await;
    let canceled = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await
        .expect("cancel");
    assert_eq!(canceled.status.as_str(), "refunded");
    assert_eq!(shop.stock("MUG").await, before, "returned at the cancel");
    until_refunds_fail(&shop, &placed.intent_id).await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(
        (order.status.as_str(), order.refunded_amount_minor),
        ("paid", 0)
    );
    assert!(
        order
            .needs_attention
            .as_deref()
            .is_some_and(|reason| reason.starts_with("refund_reversed")),
        "{:?}",
        order.needs_attention
    );
    assert_eq!(
        shop.stock("MUG").await,
        before,
        "a failed refund takes no stock"
    );
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
    let retried = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await
        .expect("a second cancel refunds again");
    assert_eq!(retried.status.as_str(), "refunded");
    assert_eq!(
        shop.provider_refunds(&placed.intent_id).await.0,
        2,
        "a new refund at Stripe, under a new key"
    );
    assert_eq!(shop.stock("MUG").await, before, "returned once");
}
both_backends!(risk_p5_a_cancel_whose_refund_fails_later_says_so_and_can_be_retried);
