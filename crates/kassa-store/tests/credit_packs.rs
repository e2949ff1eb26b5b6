//! Credit packs on both backends (seed 003, risks W1, W2, W3): a paid order of a variant that
//! carries credits grants its buyer credits × quantity once — whatever events arrive, however
//! often — in the same transaction as the order's move to paid, so a failure between the two
//! leaves neither, and the retry applies both once.

use std::collections::BTreeMap;

use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_app::ports::{CaptureMethod, CreditStore};
use kassa_testkit::shop::{EmulatedShop, Placed, checkout_input};
use kassa_testkit::{TestDb, both_backends};
use serde_json::Value;

const FAULT_BEFORE_CREDIT_GRANT: &str = "webhook.before_credit_grant";

/// The shop, with a pack of 100 credits for 5.00 EUR; a checkout of two packs and one mug,
/// confirmed with a good card (its events not yet delivered).
async fn bought_two_packs(db: TestDb) -> (EmulatedShop, Placed) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let pack = NewProduct {
        seller_id: None,
        name: "100 credits".into(),
        variants: vec![NewVariant {
            sku: "PACK".into(),
            unit_amount_minor: 500,
            currency: "eur".into(),
            attributes: BTreeMap::new(),
            credits: 100,
        }],
    };
    shop.app.create_product(pack).await.expect("pack");
    shop.app.set_on_hand("PACK", None, 10).await.expect("stock");
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "PACK", 2)
        .await
        .expect("packs");
    shop.app
        .add_cart_line(&cart.id, "MUG", 1)
        .await
        .expect("mug");
    let reply = shop
        .app
        .checkout(checkout_input(
            &cart.id,
            2 * 500 + kassa_testkit::shop::UNIT,
            "packs",
            kassa_app::checkout::CheckoutFlow::Embedded,
        ))
        .await
        .expect("checkout");
    let body: Value = serde_json::from_str(&reply.response.body).expect("json");
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let placed = Placed {
        order_id: text(&body["order"]["id"]),
        intent_id: text(&body["payment"]["payment_intent_id"]),
        client_secret: text(&body["payment"]["client_secret"]),
        order_token: text(&body["order_token"]),
    };
    shop.confirm(&placed, "pm_card_visa").await;
    (shop, placed)
}

/// (balance, entries) of the buyer, by e-mail; (0, 0) when no customer exists.
async fn buyer_credits(shop: &EmulatedShop) -> (i64, usize) {
    let id = shop
        .scalar("SELECT COUNT(*) FROM customers WHERE email = 'ada@example.com'")
        .await;
    if id == 0 {
        return (0, 0);
    }
    let customer = shop
        .db
        .store
        .customer_for_email("cus_unused", "ada@example.com", 0)
        .await
        .expect("customer");
    let entries = shop
        .db
        .store
        .credit_entries(&customer.id, 100)
        .await
        .expect("entries");
    (customer.balance, entries.len())
}

async fn risk_w1_a_paid_pack_order_grants_once_whatever_events_arrive(db: TestDb) {
    let (shop, placed) = bought_two_packs(db).await;
    // Every event three times, as duplicated deliveries would bring them.
    for _ in 0..3 {
        shop.deliver_events().await;
    }
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(buyer_credits(&shop).await, (200, 1));
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM credit_entries WHERE business_key LIKE 'order:%'")
            .await,
        1
    );
}
both_backends!(risk_w1_a_paid_pack_order_grants_once_whatever_events_arrive);

async fn risk_w3_a_failure_before_the_grant_leaves_neither_then_the_retry_applies_both(db: TestDb) {
    let (shop, placed) = bought_two_packs(db).await;
    shop.db.store.faults().arm(FAULT_BEFORE_CREDIT_GRANT);
    shop.deliver_events().await;
    // The payment, the stock commit, the order's move and the grant: all or nothing.
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
    assert_eq!(buyer_credits(&shop).await, (0, 0));
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM webhook_events WHERE status = 'failed'")
            .await,
        1
    );
    // The inbox retries the failed event: everything once.
    shop.clock.advance(3600);
    assert_eq!(shop.app.process_inbox(10).await.expect("retry"), 1);
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(buyer_credits(&shop).await, (200, 1));
    shop.deliver_events().await;
    assert_eq!(buyer_credits(&shop).await, (200, 1));
}
both_backends!(risk_w3_a_failure_before_the_grant_leaves_neither_then_the_retry_applies_both);

/// Refunds the whole order, and delivers the refund's events.
async fn refund_everything(shop: &EmulatedShop, placed: &Placed) {
    shop.app
        .create_refund(kassa_app::refunds::RefundInput {
            order_id: placed.order_id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some("refund-all".into()),
            amount_minor: None,
            reason: None,
            restock: false,
            actor: kassa_testkit::shop::actor(),
        })
        .await
        .expect("refunded");
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "refunded");
}

/// A refunded pack takes its credits back, once, however often the refund is reported.
async fn a_refunded_pack_order_claws_its_credits_back_once(db: TestDb) {
    let (shop, placed) = bought_two_packs(db).await;
    shop.deliver_events().await;
    assert_eq!(buyer_credits(&shop).await, (200, 1));
    refund_everything(&shop, &placed).await;
    shop.deliver_events().await;
    assert_eq!(buyer_credits(&shop).await, (0, 2));
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(order.needs_attention, None);
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
    // The grant removed by hand: the paid pack order without it, and the clawback larger than
    // what is left to claw from, are both reported (invariant 8).
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query("DELETE FROM credit_entries WHERE business_key = $1")
        .bind(format!("order:{}", placed.order_id))
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let report = shop.app.check_invariants().await.expect("checked");
    let found = |id: &str| {
        report
            .violations
            .iter()
            .any(|v| v.invariant == 8 && v.ids.iter().any(|i| i == id))
    };
    assert!(found(&placed.order_id), "{:#?}", report.violations);
    assert!(
        report.violations.iter().any(|v| v.invariant == 8
            && v.what.contains("no grant to take back from")
            && v.ids.iter().any(|i| i.starts_with("crc_"))),
        "{:#?}",
        report.violations
    );
}

/// Partial refunds take back the credits their share of the money paid for, each once; the
/// last one takes back the rest.
async fn partial_refunds_claw_back_their_share(db: TestDb) {
    let (shop, placed) = bought_two_packs(db).await;
    shop.deliver_events().await;
    let total = 2 * 500 + kassa_testkit::shop::UNIT;
    for (key, amount) in [("first-half", total / 2), ("the-rest", total - total / 2)] {
        shop.app
            .create_refund(kassa_app::refunds::RefundInput {
                order_id: placed.order_id.clone(),
                key_scope: "secret".into(),
                idempotency_key: Some(key.into()),
                amount_minor: Some(amount),
                reason: None,
                restock: false,
                actor: kassa_testkit::shop::actor(),
            })
            .await
            .expect("refunded");
        // Every event twice: a clawback is written once per refund.
        shop.deliver_events().await;
        shop.deliver_events().await;
        let expected = kassa_domain::credits::refunded_share(200, amount, total);
        if key == "first-half" {
            assert_eq!(buyer_credits(&shop).await, (200 - expected, 2));
        }
    }
    assert_eq!(buyer_credits(&shop).await, (0, 3));
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
}
both_backends!(partial_refunds_claw_back_their_share);
both_backends!(a_refunded_pack_order_claws_its_credits_back_once);

/// Credits already spent cannot be taken back: the balance stays at zero, never below, and
/// the order is flagged for a person.
async fn a_refund_after_the_credits_were_spent_flags_the_order(db: TestDb) {
    let (shop, placed) = bought_two_packs(db).await;
    shop.deliver_events().await;
    let customer = shop
        .db
        .store
        .customer_for_email("cus_unused", "ada@example.com", 0)
        .await
        .expect("customer");
    shop.app
        .debit_credits(kassa_app::subscriptions::DebitInput {
            customer_id: customer.id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some("spend".into()),
            amount: 150,
            reason: None,
        })
        .await
        .expect("spent");
    refund_everything(&shop, &placed).await;
    assert_eq!(buyer_credits(&shop).await, (0, 3));
    let order = shop.app.order(&placed.order_id).await.expect("order");
    let flag = order.needs_attention.unwrap_or_default();
    assert!(flag.starts_with("credits_already_spent"), "{flag}");
    assert!(flag.contains("150 refunded credits"), "{flag}");
}
both_backends!(a_refund_after_the_credits_were_spent_flags_the_order);

/// A pack refunded in many parts, back to back in one second (so no ordering of the refunds
/// by time or id can be relied on), takes back exactly what it granted: each clawback is the
/// total's share less what was settled before it. And a refunded pack whose credits were not all
/// taken back is reported by the invariant check.
async fn risk_w3_a_pack_refunded_in_parts_takes_back_every_credit(db: TestDb) {
    let (shop, placed) = bought_two_packs(db).await;
    shop.deliver_events().await;
    let total = 2 * 500 + kassa_testkit::shop::UNIT;
    let parts: Vec<i64> = [vec![49; 20], vec![total - 20 * 49]].concat();
    for (n, amount) in parts.into_iter().enumerate() {
        shop.app
            .create_refund(kassa_app::refunds::RefundInput {
                order_id: placed.order_id.clone(),
                key_scope: "secret".into(),
                idempotency_key: Some(format!("part-{n}")),
                amount_minor: Some(amount),
                reason: None,
                restock: false,
                actor: kassa_testkit::shop::actor(),
            })
            .await
            .expect("refunded");
        shop.deliver_events().await;
    }
    assert_eq!(shop.status(&placed.order_id).await, "refunded");
    assert_eq!(buyer_credits(&shop).await.0, 0, "all 200 taken back");
    assert_eq!(
        shop.scalar(
            "SELECT CAST(-SUM(amount) AS BIGINT) FROM credit_entries WHERE kind = 'clawback'"
        )
        .await,
        200
    );
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
    // One clawback removed by hand: the refunded pack's credits are no longer all taken back.
    shop.tamper(
        "DELETE FROM credit_entries WHERE id =
           (SELECT MIN(id) FROM credit_entries WHERE kind = 'clawback')",
        &[],
    )
    .await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(
        report.violations.iter().any(|v| v.invariant == 8
            && v.what.contains("not all taken back")
            && v.ids.contains(&placed.order_id)),
        "{:#?}",
        report.violations
    );
}
both_backends!(risk_w3_a_pack_refunded_in_parts_takes_back_every_credit);
