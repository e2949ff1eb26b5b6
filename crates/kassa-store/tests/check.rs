//! The invariant checker (docs/risks.md) on both backends, against the emulator: a shop's ordinary
//! day passes; each kind of breakage is reported with the ids involved.

use kassa_app::order_commands::Requester;
use kassa_app::ports::CaptureMethod;
use kassa_app::refunds::RefundInput;
use kassa_testkit::shop::{EmulatedShop, actor};
use kassa_testkit::{TestDb, both_backends};
use serde_json::json;

async fn risk_a1_a_shops_ordinary_day_passes_every_invariant(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let paid = shop.paid(&[("MUG", 2)]).await;
    shop.app
        .create_refund(RefundInput {
            order_id: paid.order_id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some("partial".into()),
            amount_minor: Some(300),
            reason: None,
            restock: false,
            actor: actor(),
        })
        .await
        .expect("refund");
    let canceled = shop.checkout(&[("TEE", 1)]).await;
    shop.app
        .cancel_order(&canceled.order_id, &Requester::Operator, &actor())
        .await
        .expect("canceled");
    let disputed = shop.paid(&[("TEE", 1)]).await;
    shop.control(
        &format!("/_emulator/payment_intents/{}/dispute", disputed.intent_id),
        json!({}),
    )
    .await;
    let _pending = shop.checkout(&[("MUG", 1)]).await;
    shop.deliver_events().await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
    assert_eq!(report.payments_checked, 4);
}
both_backends!(risk_a1_a_shops_ordinary_day_passes_every_invariant);

async fn every_kind_of_breakage_is_reported_with_its_ids(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let paid = shop.paid(&[("MUG", 1)]).await;
    // Paid at the provider, the webhook never delivered: the order does not reflect it (1).
    let unseen = shop.checkout(&[("TEE", 1)]).await;
    shop.confirm(&unseen, "pm_card_visa").await;
    // A refund made in the provider's dashboard Kassa never heard of (4).
    shop.stripe(
        reqwest::Method::POST,
        "/v1/refunds",
        &[
            ("payment_intent", paid.intent_id.as_str()),
            ("amount", "100"),
        ],
    )
    .await;
    // Stock counters edited by hand (3), and a status changed without an audit record (7).
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query("UPDATE inventory_levels SET reserved = reserved + 1 WHERE sku = 'MUG'")
        .execute(&pool)
        .await
        .expect("tamper");
    sqlx::query("UPDATE orders SET status = 'requires_action' WHERE id = $1")
        .bind(&unseen.order_id)
        .execute(&pool)
        .await
        .expect("tamper");
    // The paid order's payment applied a second time (5): an audit record of it becoming paid
    // again, as a webhook applied twice would leave.
    sqlx::query(
        "INSERT INTO audit_log (entity_type, entity_id, action, actor, before_state, after_state, created_at)
         SELECT entity_type, entity_id, action, actor, before_state, after_state, created_at
         FROM audit_log WHERE entity_type = 'order' AND entity_id = $1 AND after_state = 'paid'",
    )
    .bind(&paid.order_id)
    .execute(&pool)
    .await
    .expect("tamper");
    pool.close().await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(!report.passed());
    let found = |invariant: u8, id: &str| {
        report
            .violations
            .iter()
            .any(|v| v.invariant == invariant && v.ids.iter().any(|i| i == id))
    };
    assert!(found(1, &unseen.order_id), "{:#?}", report.violations);
    assert!(found(4, &paid.order_id), "{:#?}", report.violations);
    assert!(found(3, "MUG@default"), "{:#?}", report.violations);
    assert!(found(7, &unseen.order_id), "{:#?}", report.violations);
    assert!(found(5, &paid.order_id), "{:#?}", report.violations);
}
both_backends!(every_kind_of_breakage_is_reported_with_its_ids);
