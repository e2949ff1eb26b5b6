//! After payment, with the real adapter against the emulator on both backends: the capture
//! window and its scheduled capture, order edits (O1, O2), capture racing an edit (O3), cancel
//! before and after capture (P3), a cancel whose answer is lost (P5), cancel racing the
//! customer's confirmation and a payment succeeding for a canceled order (P7).

use std::sync::Arc;

use kassa_app::AppError;
use kassa_app::order_commands::{EditRequest, OPERATION_RESUME_AFTER_SECS, Requester};
use kassa_app::ports::CaptureMethod;
use kassa_domain::commands::LineChange;
use kassa_testkit::shop::{EmulatedShop, Placed, STOCK, UNIT, actor};
use kassa_testkit::{TestDb, both_backends};
use serde_json::json;

const WINDOW_SECS: i64 = 3_600;

async fn manual(db: TestDb) -> EmulatedShop {
    EmulatedShop::new(db, CaptureMethod::Manual).await
}

fn lines(changes: &[(&str, i64)]) -> EditRequest {
    EditRequest {
        shipping: None,
        lines: changes
            .iter()
            .map(|(sku, quantity)| LineChange {
                sku: (*sku).into(),
                quantity: *quantity,
            })
            .collect(),
    }
}

/// Checkout and authorization (manual capture): the order is `authorized`.
async fn authorized(shop: &EmulatedShop, order: &[(&str, i64)]) -> Placed {
    let placed = shop.paid(order).await;
    assert_eq!(shop.status(&placed.order_id).await, "authorized");
    placed
}

async fn risk_o1_an_edit_changes_lines_amount_and_stock_together(db: TestDb) {
    let shop = manual(db).await;
    let placed = authorized(&shop, &[("MUG", 3), ("TEE", 2)]).await;
    let op = Requester::Operator;
    let order = shop
        .app
        .edit_order(
            &placed.order_id,
            lines(&[("MUG", 1), ("TEE", 0)]),
            &op,
            &actor(),
        )
        .await
        .expect("edited");
    assert_eq!(order.total.amount_minor(), UNIT);
    let kept: Vec<_> = order
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity))
        .collect();
    assert_eq!(kept, [("MUG", 1)], "the real lines changed");
    assert_eq!(
        shop.stock("MUG").await,
        (STOCK - 1, 1, 0),
        "reservation shrank"
    );
    assert_eq!(
        shop.stock("TEE").await,
        (STOCK, 0, 0),
        "removed line's stock is back"
    );
    // The capture takes the edited amount; the rest of the authorization is released.
    let paid = shop
        .app
        .capture_order(&placed.order_id, None, &actor())
        .await
        .expect("captured");
    assert_eq!(
        (paid.status.as_str(), paid.captured_amount_minor),
        ("paid", UNIT)
    );
    assert_eq!(
        shop.intent(&placed.intent_id).await["amount_received"],
        UNIT
    );
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 0, 1));
    assert_eq!(
        shop.stock("TEE").await,
        (STOCK, 0, 0),
        "the removed line is not sold at capture"
    );
    let events = shop
        .app
        .order_events(&placed.order_id)
        .await
        .expect("audit");
    assert!(
        events.iter().any(|e| e.action == "edited"),
        "the edit is audited"
    );
}
both_backends!(risk_o1_an_edit_changes_lines_amount_and_stock_together);

async fn risk_o2_raising_the_amount_is_refused_with_one_policy(db: TestDb) {
    let shop = manual(db).await;
    let placed = authorized(&shop, &[("MUG", 2)]).await;
    let op = Requester::Operator;
    for change in [[("MUG", 3)], [("TEE", 1)]] {
        let refused = shop
            .app
            .edit_order(&placed.order_id, lines(&change), &op, &actor())
            .await;
        assert!(
            matches!(&refused, Err(AppError::InvalidState { message }) if message.contains("place a new order")),
            "{refused:?}"
        );
    }
    // After the window nothing changes, whoever asks.
    shop.clock.advance(WINDOW_SECS);
    let late = shop
        .app
        .edit_order(&placed.order_id, lines(&[("MUG", 1)]), &op, &actor())
        .await;
    assert!(
        matches!(late, Err(AppError::InvalidState { .. })),
        "{late:?}"
    );
    assert_eq!(shop.stock("MUG").await, (STOCK - 2, 2, 0), "nothing moved");
}
both_backends!(risk_o2_raising_the_amount_is_refused_with_one_policy);

async fn risk_o3_capture_racing_an_edit_never_both_proceed(db: TestDb) {
    let shop = Arc::new(manual(db).await);
    // Deterministically inside the race: the provider holds the capture while the edit comes.
    let held = authorized(&shop, &[("MUG", 2)]).await;
    shop.fault(
        "POST /v1/payment_intents/*/capture",
        json!([{"hang_ms": 400}]),
    )
    .await;
    let capture = {
        let (shop, id) = (shop.clone(), held.order_id.clone());
        tokio::spawn(async move { shop.app.capture_order(&id, None, &actor()).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while shop
        .scalar("SELECT COUNT(*) FROM orders WHERE pending_operation = 'capture'")
        .await
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the capture took the order"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let edit = shop
        .app
        .edit_order(
            &held.order_id,
            lines(&[("MUG", 1)]),
            &Requester::Operator,
            &actor(),
        )
        .await;
    assert!(
        matches!(edit, Err(AppError::InvalidState { .. })),
        "{edit:?}"
    );
    let paid = capture.await.expect("task").expect("captured");
    assert_eq!(
        (paid.captured_amount_minor, paid.total.amount_minor()),
        (2 * UNIT, 2 * UNIT)
    );
    // And freely racing, both ways round.
    for _ in 0..(STOCK / 2 - 1) {
        let placed = authorized(&shop, &[("MUG", 2)]).await;
        let capture = {
            let (shop, id) = (shop.clone(), placed.order_id.clone());
            tokio::spawn(async move { shop.app.capture_order(&id, None, &actor()).await })
        };
        let edit = {
            let (shop, id) = (shop.clone(), placed.order_id.clone());
            let op = Requester::Operator;
            tokio::spawn(async move {
                shop.app
                    .edit_order(&id, lines(&[("MUG", 1)]), &op, &actor())
                    .await
            })
        };
        let (capture, edit) = (capture.await.expect("task"), edit.await.expect("task"));
        let order = shop.app.order(&placed.order_id).await.expect("order");
        let captured = shop.intent(&placed.intent_id).await["amount_received"].as_i64();
        match (&capture, &edit) {
            // The edit went first: the capture took the edited amount.
            (Ok(_), Ok(_)) => {
                assert_eq!((order.total.amount_minor(), captured), (UNIT, Some(UNIT)))
            }
            // The capture went first: the edit was refused, nothing changed.
            (Ok(_), Err(AppError::InvalidState { .. })) => {
                assert_eq!(
                    (order.total.amount_minor(), captured),
                    (2 * UNIT, Some(2 * UNIT))
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(order.captured_amount_minor, order.total.amount_minor());
        assert_eq!(
            order.lines.iter().map(|l| l.amount_minor).sum::<i64>(),
            order.total.amount_minor()
        );
    }
}
both_backends!(risk_o3_capture_racing_an_edit_never_both_proceed);

async fn scheduled_capture_runs_once_when_the_window_closes_even_with_two_instances(db: TestDb) {
    let shop = manual(db).await;
    let placed = authorized(&shop, &[("MUG", 1)]).await;
    let other = shop.second_instance(CaptureMethod::Manual);
    assert_eq!(
        shop.app.capture_due_orders(10).await.expect("round"),
        0,
        "not due yet"
    );
    shop.clock.advance(WINDOW_SECS);
    // The second instance's clock reads the same time.
    let other_clock_moved = shop.second_instance(CaptureMethod::Manual);
    let (first, second) = tokio::join!(
        shop.app.capture_due_orders(10),
        other_clock_moved.capture_due_orders(10)
    );
    let _ = other;
    assert_eq!(
        first.expect("round") + second.expect("round"),
        1,
        "one instance captured"
    );
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    let captures = shop
        .stripe(
            reqwest::Method::GET,
            "/v1/events?type=charge.captured&limit=100",
            &[],
        )
        .await;
    assert_eq!(
        captures["data"].as_array().map(Vec::len),
        Some(1),
        "one capture at the provider"
    );
}
both_backends!(scheduled_capture_runs_once_when_the_window_closes_even_with_two_instances);

async fn risk_p3_cancel_before_capture_cancels_at_the_provider_first(db: TestDb) {
    let shop = manual(db).await;
    let placed = authorized(&shop, &[("MUG", 2)]).await;
    // The provider cannot be reached: the order is not canceled and keeps its stock, because
    // its PaymentIntent can still be captured.
    shop.fault(
        "POST /v1/payment_intents/*/cancel",
        json!([{"status": 500}, {"status": 500}]),
    )
    .await;
    let failed = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await;
    assert!(
        matches!(failed, Err(AppError::ProviderUnavailable { .. })),
        "{failed:?}"
    );
    assert_eq!(shop.status(&placed.order_id).await, "authorized");
    assert_eq!(
        shop.stock("MUG").await,
        (STOCK - 2, 2, 0),
        "stock held while chargeable"
    );
    // Retried: canceled at the provider, then locally, stock released.
    let canceled = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await
        .expect("canceled");
    assert_eq!(canceled.status.as_str(), "canceled");
    assert_eq!(shop.intent(&placed.intent_id).await["status"], "canceled");
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0));
    // After capture, cancel is a full refund with restock.
    let paid = EmulatedShop::paid(&shop, &[("TEE", 1)]).await;
    shop.app
        .capture_order(&paid.order_id, None, &actor())
        .await
        .expect("captured");
    let refunded = shop
        .app
        .cancel_order(&paid.order_id, &Requester::Operator, &actor())
        .await
        .expect("canceled by refund");
    assert_eq!(refunded.status.as_str(), "refunded");
    assert_eq!(shop.provider_refunds(&paid.intent_id).await, (1, UNIT));
    assert_eq!(shop.stock("TEE").await, (STOCK, 0, 0), "restocked");
}
both_backends!(risk_p3_cancel_before_capture_cancels_at_the_provider_first);

async fn risk_p5_a_cancel_whose_answer_is_lost_is_finished_later(db: TestDb) {
    let shop = manual(db).await;
    let placed = authorized(&shop, &[("MUG", 1)]).await;
    shop.fault(
        "POST /v1/payment_intents/*/cancel",
        json!(["lose_response", {"status": 500}]),
    )
    .await;
    let lost = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await;
    assert!(
        matches!(lost, Err(AppError::ProviderUnavailable { .. })),
        "{lost:?}"
    );
    // Canceled at the provider, not yet here: the order says a cancel is under way and keeps
    // its stock; nothing disagrees for good.
    assert_eq!(shop.intent(&placed.intent_id).await["status"], "canceled");
    assert_eq!(shop.status(&placed.order_id).await, "authorized");
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 1, 0));
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE pending_operation = 'cancel'")
            .await,
        1
    );
    // Nobody retries: the background worker finishes it with the same provider key, even once
    // the customer's modification window has closed.
    shop.clock
        .advance(WINDOW_SECS + OPERATION_RESUME_AFTER_SECS);
    assert_eq!(
        shop.app.finish_pending_operations(10).await.expect("round"),
        1
    );
    assert_eq!(shop.status(&placed.order_id).await, "canceled");
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0));
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE pending_operation IS NOT NULL")
            .await,
        0
    );
}
both_backends!(risk_p5_a_cancel_whose_answer_is_lost_is_finished_later);

async fn risk_p7_cancel_racing_confirm_ends_in_exactly_one_outcome(db: TestDb) {
    let shop = Arc::new(EmulatedShop::new(db, CaptureMethod::Automatic).await);
    for _ in 0..6 {
        let placed = shop.checkout(&[("MUG", 1)]).await;
        let placed = Arc::new(placed);
        let confirm = {
            let (shop, placed) = (shop.clone(), placed.clone());
            tokio::spawn(async move { shop.confirm(&placed, "pm_card_visa").await })
        };
        let cancel = {
            let (shop, id) = (shop.clone(), placed.order_id.clone());
            let op = Requester::Operator;
            tokio::spawn(async move { shop.app.cancel_order(&id, &op, &actor()).await })
        };
        let (confirmed, canceled) = (confirm.await.expect("task"), cancel.await.expect("task"));
        shop.deliver_events().await;
        let intent = shop.intent(&placed.intent_id).await;
        let status = shop.status(&placed.order_id).await;
        match intent["status"].as_str() {
            Some("canceled") => {
                assert_eq!(status, "canceled", "{confirmed} / {canceled:?}");
                assert!(canceled.is_ok());
            }
            Some("succeeded") => {
                // Paid first: the cancel became a full refund with restock.
                assert_eq!(status, "refunded", "{confirmed} / {canceled:?}");
                assert_eq!(shop.provider_refunds(&placed.intent_id).await.1, UNIT);
            }
            other => panic!("intent {other:?}"),
        }
    }
    assert_eq!(
        shop.stock("MUG").await,
        (STOCK, 0, 0),
        "all stock is back either way"
    );
}
both_backends!(risk_p7_cancel_racing_confirm_ends_in_exactly_one_outcome);

async fn risk_p7_a_payment_succeeding_for_a_canceled_order_is_refunded(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    // The order was canceled here while the customer still completed the payment elsewhere (a
    // second tab): the cancel is made as a cancel elsewhere would leave it.
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    for statement in [
        "UPDATE orders SET status = 'canceled'",
        "UPDATE reservations SET status = 'released'",
        "UPDATE inventory_levels SET reserved = 0",
    ] {
        sqlx::query(statement).execute(&pool).await.expect("set up");
    }
    pool.close().await;
    shop.confirm(&placed, "pm_card_visa").await;
    shop.deliver_events().await;
    assert_eq!(
        shop.status(&placed.order_id).await,
        "canceled",
        "never paid"
    );
    assert_eq!(shop.stock("MUG").await, (STOCK, 0, 0), "no stock committed");
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM outbox WHERE topic = 'order.refunded_after_cancel'")
            .await,
        1
    );
    assert_eq!(shop.app.send_unsent_refunds(10).await.expect("round"), 1);
    assert_eq!(
        shop.provider_refunds(&placed.intent_id).await,
        (1, 2 * UNIT),
        "money back"
    );
    shop.deliver_events().await;
    shop.deliver_events().await;
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM refunds").await, 1, "once");
    let events = shop
        .app
        .order_events(&placed.order_id)
        .await
        .expect("audit");
    assert!(
        events
            .iter()
            .any(|e| e.entity_type == "refund" && e.action == "requested")
    );
}
both_backends!(risk_p7_a_payment_succeeding_for_a_canceled_order_is_refunded);

/// A dispute is tracked on its order (amount, reason, status, evidence due date); the order is
/// `disputed` while it is open and returns when it closes; a lost dispute's amount is gone, so
/// it can no longer be refunded. Each step is audited and announced.
async fn disputes_are_tracked_and_a_lost_one_counts_as_gone(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.paid(&[("MUG", 2)]).await;
    let dispute = shop
        .control(
            &format!("/_emulator/payment_intents/{}/dispute", placed.intent_id),
            json!({}),
        )
        .await;
    shop.deliver_events().await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(order.status.as_str(), "disputed");
    let tracked = &order.disputes[0];
    assert_eq!(
        (
            tracked.amount_minor,
            tracked.reason.as_deref(),
            tracked.status.as_str()
        ),
        (2 * UNIT, Some("fraudulent"), "needs_response")
    );
    assert!(tracked.evidence_due_by.is_some());
    let id = dispute["id"].as_str().expect("dispute id");
    shop.control(
        &format!("/_emulator/disputes/{id}/close"),
        json!({"outcome": "lost"}),
    )
    .await;
    shop.deliver_events().await;
    shop.deliver_events().await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(
        (order.status.as_str(), order.disputes[0].status.as_str()),
        ("paid", "lost")
    );
    assert_eq!(order.dispute_lost_minor, 2 * UNIT, "counted once");
    let refund = shop
        .app
        .create_refund(kassa_app::refunds::RefundInput {
            order_id: placed.order_id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some("after-lost".into()),
            amount_minor: None,
            reason: None,
            restock: false,
            actor: actor(),
        })
        .await;
    assert!(
        matches!(
            refund,
            Err(AppError::AmountExceedsRefundable {
                refundable_minor: 0
            })
        ),
        "{refund:?}"
    );
    assert_eq!(
        shop.scalar(
            "SELECT COUNT(*) FROM outbox WHERE topic IN ('dispute.created', 'dispute.closed')"
        )
        .await,
        2
    );
    let audit = shop
        .app
        .order_events(&placed.order_id)
        .await
        .expect("audit");
    assert_eq!(
        audit.iter().filter(|e| e.entity_type == "dispute").count(),
        2
    );
}
both_backends!(disputes_are_tracked_and_a_lost_one_counts_as_gone);

/// A cancel after capture whose refund the provider refuses answers an error (never a silent
/// 200), leaves the order paid and flagged, and a later cancel asks for a new refund.
async fn risk_p5_a_cancel_whose_refund_is_refused_says_so_and_can_be_retried(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.paid(&[("MUG", 1)]).await;
    shop.fault("POST /v1/refunds", json!([{"status": 400}]))
        .await;
    let refused = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await;
    assert!(
        matches!(refused, Err(AppError::InvalidState { .. })),
        "{refused:?}"
    );
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(order.status.as_str(), "paid");
    assert!(
        order
            .needs_attention
            .as_deref()
            .is_some_and(|reason| reason.starts_with("kassa_refund_failed")),
        "{:?}",
        order.needs_attention
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE pending_operation IS NOT NULL")
            .await,
        0,
        "nothing left pending forever"
    );
    let retried = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await
        .expect("canceled by a new refund");
    assert_eq!(retried.status.as_str(), "refunded");
    assert_eq!(shop.provider_refunds(&placed.intent_id).await, (1, UNIT));
}
both_backends!(risk_p5_a_cancel_whose_refund_is_refused_says_so_and_can_be_retried);

/// The merchant hears of each failed attempt (with Stripe's decline code) and of an
/// authorization, once each however often the events arrive (risk W5).
async fn risk_w5_a_declined_attempt_and_an_authorization_are_announced(db: TestDb) {
    let shop = manual(db).await;
    let placed = shop.checkout(&[("MUG", 1)]).await;
    for _ in 0..2 {
        shop.confirm(&placed, "pm_card_chargeDeclined").await;
        shop.deliver_events().await;
        shop.deliver_events().await;
    }
    shop.confirm(&placed, "pm_card_visa").await;
    shop.deliver_events().await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "authorized");
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT topic, payload FROM outbox ORDER BY created_at, id")
            .fetch_all(&pool)
            .await
            .expect("outbox");
    pool.close().await;
    let failed: Vec<serde_json::Value> = rows
        .iter()
        .filter(|(topic, _)| topic == "payment.failed")
        .map(|(_, payload)| serde_json::from_str(payload).expect("json"))
        .collect();
    assert_eq!(failed.len(), 2, "one per declined attempt: {rows:?}");
    for notice in &failed {
        assert_eq!(notice["decline_code"], "generic_decline", "{notice}");
        assert_eq!(notice["order_id"], placed.order_id.as_str());
    }
    assert_eq!(
        rows.iter()
            .filter(|(topic, _)| topic == "order.authorized")
            .count(),
        1
    );
}
both_backends!(risk_w5_a_declined_attempt_and_an_authorization_are_announced);

/// A refund that fails while a dispute is open: when the dispute closes, the order returns to
/// what its refunds say now (`paid`), not to the `refunded` it was when the dispute opened
/// (risk P6: a status never says money went back that did not).
async fn risk_p6_a_dispute_closing_after_a_refund_failed_returns_the_order_to_paid(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.checkout(&[("MUG", 1)]).await;
    shop.confirm(&placed, "pm_card_refundFail").await;
    shop.deliver_events().await;
    shop.app
        .create_refund(kassa_app::refunds::RefundInput {
            order_id: placed.order_id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some("whole".into()),
            amount_minor: None,
            reason: None,
            restock: false,
            actor: actor(),
        })
        .await
        .expect("refund");
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "refunded");
    let dispute = shop
        .control(
            &format!("/_emulator/payment_intents/{}/dispute", placed.intent_id),
            json!({}),
        )
        .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "disputed");
    shop.control("/_emulator/settle", json!({})).await;
    shop.deliver_events().await;
    let id = dispute["id"].as_str().expect("dispute id");
    shop.control(
        &format!("/_emulator/disputes/{id}/close"),
        json!({"outcome": "won"}),
    )
    .await;
    shop.deliver_events().await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(
        (order.status.as_str(), order.refunded_amount_minor),
        ("paid", 0)
    );
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
}
both_backends!(risk_p6_a_dispute_closing_after_a_refund_failed_returns_the_order_to_paid);

/// A declined attempt whose event arrives after the next attempt succeeded is still announced
/// (the re-fetched intent has moved on; the event's own snapshot names the failed charge).
async fn risk_w5_a_decline_reported_after_the_payment_succeeded_is_still_announced(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.checkout(&[("MUG", 1)]).await;
    shop.confirm(&placed, "pm_card_chargeDeclined").await;
    shop.confirm(&placed, "pm_card_visa").await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    let failed = shop
        .scalar("SELECT COUNT(*) FROM outbox WHERE topic = 'payment.failed'")
        .await;
    assert_eq!(failed, 1, "the first attempt's decline is announced");
}
both_backends!(risk_w5_a_decline_reported_after_the_payment_succeeded_is_still_announced);
