//! Provider events on SQLite and PostgreSQL: exactly-once effects whatever the delivery order,
//! duplicates, crashes mid-effect, amount mismatches and races with client-side sync.

use std::collections::BTreeMap;
use std::sync::Arc;

use kassa_app::App;
use kassa_app::checkout::CheckoutInput;
use kassa_app::ports::{
    Actor, EventStatus, ProviderCharge, ProviderDispute, ProviderEvent, ProviderEventObject,
    ProviderPaymentIntent, ProviderRefund, Recorded, ShippingAddress,
};
use kassa_app::webhooks::EVENT_ATTEMPTS_MAX;
use kassa_domain::payment::PaymentStatus;
use kassa_domain::refund::RefundStatus;
use kassa_testkit::provider::{FakeProvider, Script};
use kassa_testkit::verifier::MemoryVerifier;
use kassa_testkit::{TestClock, TestDb, app_with_parts, both_backends};

const FAULT_AFTER_STOCK_COMMIT: &str = "webhook.after_stock_commit";

struct Shop {
    app: App,
    provider: Arc<FakeProvider>,
    verifier: Arc<MemoryVerifier>,
    clock: Arc<TestClock>,
    db: TestDb,
}

struct Placed {
    order_id: String,
    intent: ProviderPaymentIntent,
}

async fn shop(db: TestDb, stock: i64) -> Shop {
    let provider = Arc::new(FakeProvider::new());
    let verifier = Arc::new(MemoryVerifier::default());
    let clock = TestClock::new();
    let app = app_with_parts(&db, provider.clone(), clock.clone(), verifier.clone());
    kassa_testkit::seed_product(&app, "Mug", "MUG", 1250, "eur", stock).await;
    Shop {
        app,
        provider,
        verifier,
        clock,
        db,
    }
}

impl Shop {
    async fn place(&self, quantity: i64, key: &str) -> Placed {
        let cart = self.app.create_cart("eur").await.expect("cart");
        self.app
            .add_cart_line(&cart.id, "MUG", quantity)
            .await
            .expect("line");
        let input = CheckoutInput {
            cart_id: cart.id.clone(),
            key_scope: "publishable".into(),
            idempotency_key: Some(key.into()),
            email: "ada@example.com".into(),
            shipping: ShippingAddress {
                name: "Ada".into(),
                line1: "1 St".into(),
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            expected_total_minor: 1250 * quantity,
            flow: kassa_app::checkout::CheckoutFlow::Embedded,
            actor: Actor {
                kind: "test".into(),
                request_id: None,
                client_ip: None,
            },
        };
        let reply = self.app.checkout(input).await;
        let order_id: String = match &reply {
            Ok(reply) => {
                let body: serde_json::Value =
                    serde_json::from_str(&reply.response.body).expect("json");
                body["order"]["id"].as_str().expect("order id").to_owned()
            }
            Err(_) => {
                self.scalar("SELECT id FROM orders ORDER BY created_at DESC LIMIT 1")
                    .await
            }
        };
        let intent = self
            .provider
            .intents()
            .into_iter()
            .find(|intent| intent.metadata.iter().any(|(_, v)| *v == order_id))
            .expect("intent for the order");
        Placed { order_id, intent }
    }

    async fn scalar<T>(&self, sql: &'static str) -> T
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let pool = sqlx::AnyPool::connect(&self.db.url).await.expect("pool");
        let value: T = sqlx::query_scalar(sql)
            .fetch_one(&pool)
            .await
            .expect("query");
        pool.close().await;
        value
    }

    async fn stock(&self) -> (i64, i64, i64) {
        let level = &self.app.inventory("MUG").await.expect("inventory")[0].stock;
        (level.available(), level.reserved, level.committed)
    }

    async fn status(&self, order_id: &str) -> String {
        self.app
            .order(order_id)
            .await
            .expect("order")
            .status
            .as_str()
            .to_owned()
    }

    /// Delivers through the endpoint's path: verify, record, apply.
    async fn deliver(&self, event: &ProviderEvent) -> Recorded {
        self.verifier.register(event.clone());
        self.app
            .receive_webhook(event.id.as_bytes(), Some("valid"))
            .await
            .expect("recorded")
    }
}

fn intent_event(
    id: &str,
    kind: &str,
    intent: &ProviderPaymentIntent,
    status: PaymentStatus,
) -> ProviderEvent {
    let mut intent = intent.clone();
    intent.status = status;
    if status == PaymentStatus::Succeeded {
        intent.amount_received_minor = intent.amount_minor;
    }
    ProviderEvent {
        id: id.into(),
        event_type: kind.into(),
        created_secs: 0,
        object: ProviderEventObject::PaymentIntent(intent),
    }
}

fn succeeded(id: &str, intent: &ProviderPaymentIntent) -> ProviderEvent {
    intent_event(
        id,
        "payment_intent.succeeded",
        intent,
        PaymentStatus::Succeeded,
    )
}

async fn risk_w1_duplicate_and_overlapping_events_apply_once(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(2, "k").await;
    let first = succeeded("evt_1", &placed.intent);
    for _ in 0..10 {
        shop.deliver(&first).await;
    }
    // A different event about the same payment (as checkout.session.completed would be).
    shop.deliver(&succeeded("evt_2", &placed.intent)).await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.stock().await, (8, 0, 2), "stock committed once");
    assert_eq!(
        shop.scalar::<i64>("SELECT COUNT(*) FROM outbox WHERE topic = 'order.paid'")
            .await,
        1
    );
    assert_eq!(
        shop.scalar::<i64>("SELECT COUNT(*) FROM webhook_events")
            .await,
        2,
        "duplicates recorded once"
    );
    let transitions = shop
        .app
        .order_events(&placed.order_id)
        .await
        .expect("audit")
        .into_iter()
        .filter(|e| e.entity_type == "order" && e.after_state.as_deref() == Some("paid"))
        .count();
    assert_eq!(transitions, 1);
}
both_backends!(risk_w1_duplicate_and_overlapping_events_apply_once);

async fn risk_w2_duplicate_check_is_inside_the_applying_transaction(db: TestDb) {
    use kassa_app::ports::WebhookStore;
    let shop = shop(db, 10).await;
    let placed = shop.place(1, "k").await;
    let event = succeeded("evt_race", &placed.intent);
    shop.db
        .store
        .record_event("evt_race", "payment_intent.succeeded", "evt_race", 0)
        .await
        .expect("recorded");
    // Eight workers all saw the event as due; the check-and-apply must let exactly one through.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let app = shop.app.clone();
            let event = event.clone();
            tokio::spawn(async move { app.apply_provider_event(&event).await })
        })
        .collect();
    let mut outcomes = BTreeMap::new();
    for racer in racers {
        let outcome = racer.await.expect("task").expect("applies");
        *outcomes.entry(format!("{outcome:?}")).or_insert(0) += 1;
    }
    assert_eq!(outcomes.get("Done"), Some(&1), "{outcomes:?}");
    assert_eq!(outcomes.get("AlreadyProcessed"), Some(&7), "{outcomes:?}");
    assert_eq!(shop.stock().await, (9, 0, 1));
}
both_backends!(risk_w2_duplicate_check_is_inside_the_applying_transaction);

async fn risk_w3_crash_between_effects_commits_nothing_then_applies_once(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(3, "k").await;
    let event = succeeded("evt_crash", &placed.intent);
    shop.db.store.faults().arm(FAULT_AFTER_STOCK_COMMIT);
    shop.deliver(&event).await;
    assert_eq!(
        shop.stock().await,
        (7, 3, 0),
        "the stock commit rolled back with the rest"
    );
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
    assert_eq!(
        shop.scalar::<String>("SELECT status FROM payments").await,
        "requires_payment_method"
    );
    assert_eq!(
        shop.scalar::<String>("SELECT status FROM webhook_events")
            .await,
        "failed"
    );
    assert_eq!(shop.scalar::<i64>("SELECT COUNT(*) FROM outbox").await, 0);
    // The retry applies everything, once.
    shop.clock.advance(3600);
    assert_eq!(shop.app.process_inbox(10).await.expect("retry"), 1);
    assert_eq!(shop.stock().await, (7, 0, 3));
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.scalar::<i64>("SELECT COUNT(*) FROM outbox").await, 1);
}
both_backends!(risk_w3_crash_between_effects_commits_nothing_then_applies_once);

async fn risk_w4_failing_event_is_retried_then_dead_lettered_then_replayed(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(1, "k").await;
    let event = succeeded("evt_dead", &placed.intent);
    shop.db.store.faults().arm(FAULT_AFTER_STOCK_COMMIT);
    shop.deliver(&event).await;
    for _ in 1..EVENT_ATTEMPTS_MAX {
        shop.clock.advance(3600);
        shop.db.store.faults().arm(FAULT_AFTER_STOCK_COMMIT);
        shop.app.process_inbox(10).await.expect("round");
    }
    let dead = shop
        .app
        .inbox_events(EventStatus::Dead)
        .await
        .expect("list");
    assert_eq!(dead.len(), 1, "dead after {EVENT_ATTEMPTS_MAX} attempts");
    assert_eq!(dead[0].attempts, EVENT_ATTEMPTS_MAX);
    shop.clock.advance(100_000);
    assert_eq!(
        shop.app.process_inbox(10).await.expect("round"),
        0,
        "dead events are not retried forever"
    );
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
    let replayed = shop
        .app
        .replay_inbox_event("evt_dead")
        .await
        .expect("replay");
    assert_eq!(replayed.status, EventStatus::Processed);
    assert_eq!(shop.status(&placed.order_id).await, "paid");
}
both_backends!(risk_w4_failing_event_is_retried_then_dead_lettered_then_replayed);

async fn risk_w5_every_payment_outcome_is_handled(db: TestDb) {
    let shop = shop(db, 10).await;
    let a = shop.place(1, "a").await;
    shop.provider
        .set_status(&a.intent.id, PaymentStatus::RequiresAction);
    shop.deliver(&intent_event(
        "e1",
        "payment_intent.requires_action",
        &a.intent,
        PaymentStatus::RequiresAction,
    ))
    .await;
    assert_eq!(shop.status(&a.order_id).await, "requires_action");
    shop.provider.set_failed(&a.intent.id, "card_declined");
    let mut failed = a.intent.clone();
    failed.last_error = Some("card_declined".into());
    shop.deliver(&intent_event(
        "e2",
        "payment_intent.payment_failed",
        &failed,
        PaymentStatus::RequiresPaymentMethod,
    ))
    .await;
    assert_eq!(
        shop.status(&a.order_id).await,
        "pending_payment",
        "still payable"
    );
    assert_eq!(
        shop.app
            .order(&a.order_id)
            .await
            .expect("order")
            .payment
            .expect("payment")
            .last_error
            .as_deref(),
        Some("card_declined")
    );
    shop.deliver(&intent_event(
        "e3",
        "payment_intent.canceled",
        &a.intent,
        PaymentStatus::Canceled,
    ))
    .await;
    assert_eq!(shop.status(&a.order_id).await, "canceled");
    assert_eq!(
        shop.stock().await,
        (10, 0, 0),
        "canceled order's stock released"
    );

    let b = shop.place(2, "b").await;
    shop.deliver(&intent_event(
        "e4",
        "payment_intent.amount_capturable_updated",
        &b.intent,
        PaymentStatus::RequiresCapture,
    ))
    .await;
    assert_eq!(shop.status(&b.order_id).await, "authorized");
    shop.deliver(&succeeded("e5", &b.intent)).await;
    assert_eq!(shop.status(&b.order_id).await, "paid");
    let refund = |id: &str, amount_minor| ProviderRefund {
        id: id.into(),
        payment_intent_id: Some(b.intent.id.clone()),
        amount_minor,
        currency: "eur".into(),
        status: RefundStatus::Succeeded,
        metadata: vec![],
    };
    shop.deliver(&ProviderEvent {
        id: "e6".into(),
        event_type: "refund.created".into(),
        created_secs: 0,
        object: ProviderEventObject::Refund(refund("re_1", 1000)),
    })
    .await;
    assert_eq!(shop.status(&b.order_id).await, "partially_refunded");
    let charge = ProviderCharge {
        id: "ch_1".into(),
        payment_intent_id: Some(b.intent.id.clone()),
        amount_minor: 2500,
        amount_captured_minor: 2500,
        amount_refunded_minor: 2500,
        currency: "eur".into(),
        refunds: vec![refund("re_1", 1000), refund("re_2", 1500)],
    };
    shop.deliver(&ProviderEvent {
        id: "e7".into(),
        event_type: "charge.refunded".into(),
        created_secs: 0,
        object: ProviderEventObject::Charge(charge),
    })
    .await;
    let order = shop.app.order(&b.order_id).await.expect("order");
    assert_eq!(
        (order.status.as_str(), order.refunded_amount_minor),
        ("refunded", 2500)
    );
    let dispute = ProviderDispute {
        id: "dp_1".into(),
        charge_id: "ch_1".into(),
        payment_intent_id: Some(b.intent.id.clone()),
        amount_minor: 2500,
        currency: "eur".into(),
        status: "needs_response".into(),
        reason: Some("fraudulent".into()),
        evidence_due_by: Some(1_800_604_800),
    };
    shop.deliver(&ProviderEvent {
        id: "e8".into(),
        event_type: "charge.dispute.created".into(),
        created_secs: 0,
        object: ProviderEventObject::Dispute(dispute.clone()),
    })
    .await;
    assert_eq!(shop.status(&b.order_id).await, "disputed");
    shop.deliver(&ProviderEvent {
        id: "e9".into(),
        event_type: "charge.dispute.closed".into(),
        created_secs: 0,
        object: ProviderEventObject::Dispute(ProviderDispute {
            status: "won".into(),
            ..dispute
        }),
    })
    .await;
    assert_eq!(
        shop.status(&b.order_id).await,
        "refunded",
        "back to where it was"
    );
}
both_backends!(risk_w5_every_payment_outcome_is_handled);

async fn risk_w5_events_in_reverse_order_end_in_the_right_state(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(1, "k").await;
    shop.deliver(&succeeded("e_late_success", &placed.intent))
        .await;
    shop.deliver(&intent_event(
        "e_early_action",
        "payment_intent.requires_action",
        &placed.intent,
        PaymentStatus::RequiresAction,
    ))
    .await;
    shop.deliver(&intent_event(
        "e_early_created",
        "payment_intent.created",
        &placed.intent,
        PaymentStatus::RequiresPaymentMethod,
    ))
    .await;
    assert_eq!(
        shop.status(&placed.order_id).await,
        "paid",
        "stale events are recorded and ignored"
    );
    assert_eq!(
        shop.scalar::<i64>("SELECT COUNT(*) FROM webhook_events WHERE status = 'ignored'")
            .await,
        2
    );
}
both_backends!(risk_w5_events_in_reverse_order_end_in_the_right_state);

async fn risk_w6_amount_mismatch_is_flagged_not_applied(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(2, "k").await;
    let mut cheaper = placed.intent.clone();
    cheaper.amount_minor = 100;
    shop.deliver(&succeeded("evt_cheap", &cheaper)).await;
    let mut other_currency = placed.intent.clone();
    other_currency.currency = "usd".into();
    shop.deliver(&succeeded("evt_usd", &other_currency)).await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(order.status.as_str(), "pending_payment");
    assert!(
        order
            .needs_attention
            .as_deref()
            .is_some_and(|r| r.starts_with("amount_mismatch"))
    );
    assert_eq!(shop.stock().await, (8, 2, 0), "nothing committed");
    assert_eq!(
        shop.scalar::<i64>("SELECT COUNT(*) FROM outbox WHERE topic = 'order.needs_attention'")
            .await,
        1
    );
}
both_backends!(risk_w6_amount_mismatch_is_flagged_not_applied);

async fn risk_g1_webhook_before_checkout_finished_is_applied(db: TestDb) {
    let shop = shop(db, 10).await;
    shop.provider.script([Script::LostResponse]);
    let placed = shop.place(1, "k").await;
    assert_eq!(
        shop.scalar::<i64>(
            "SELECT COUNT(*) FROM payments WHERE provider_payment_intent_id IS NULL"
        )
        .await,
        1
    );
    // The customer paid and Stripe's event arrives before Kassa recorded the intent id.
    shop.deliver(&succeeded("evt_early", &placed.intent)).await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.stock().await, (9, 0, 1));
    assert_eq!(
        shop.scalar::<String>("SELECT provider_payment_intent_id FROM payments")
            .await,
        placed.intent.id
    );
}
both_backends!(risk_g1_webhook_before_checkout_finished_is_applied);

async fn risk_g2_paid_order_whose_stock_was_released_is_recommitted_or_flagged(db: TestDb) {
    let shop = shop(db, 2).await;
    let first = shop.place(1, "a").await;
    let second = shop.place(1, "b").await;
    // An expiry released both reservations (as a janitor would), and someone bought the stock.
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query("UPDATE reservations SET status = 'released'")
        .execute(&pool)
        .await
        .expect("release");
    sqlx::query("UPDATE inventory_levels SET reserved = 0, committed = 1")
        .execute(&pool)
        .await
        .expect("sold one");
    pool.close().await;
    shop.deliver(&succeeded("evt_a", &first.intent)).await;
    assert_eq!(
        shop.status(&first.order_id).await,
        "paid",
        "one unit left: recommitted"
    );
    shop.deliver(&succeeded("evt_b", &second.intent)).await;
    let order = shop.app.order(&second.order_id).await.expect("order");
    assert_eq!(
        order.status.as_str(),
        "pending_payment",
        "never paid without stock"
    );
    assert!(
        order
            .needs_attention
            .as_deref()
            .is_some_and(|r| r.starts_with("stock_unavailable"))
    );
    assert_eq!(shop.stock().await, (0, 0, 2));
    assert_eq!(
        shop.scalar::<i64>("SELECT COUNT(*) FROM outbox WHERE topic = 'order.needs_attention'")
            .await,
        1
    );
}
both_backends!(risk_g2_paid_order_whose_stock_was_released_is_recommitted_or_flagged);

async fn risk_p7_client_refresh_and_webhook_race_and_only_one_applies(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(1, "k").await;
    shop.provider
        .set_status(&placed.intent.id, PaymentStatus::Succeeded);
    let event = succeeded("evt_p7", &placed.intent);
    shop.verifier.register(event.clone());
    let webhook = {
        let app = shop.app.clone();
        tokio::spawn(async move {
            app.receive_webhook(b"evt_p7", Some("valid"))
                .await
                .map(|_| ())
        })
    };
    let syncs: Vec<_> = (0..4)
        .map(|_| {
            let app = shop.app.clone();
            let order_id = placed.order_id.clone();
            // The use case `POST /v1/orders/{id}/refresh` runs for the customer's return page.
            let customer = Actor {
                kind: "customer (order token)".into(),
                request_id: None,
                client_ip: None,
            };
            tokio::spawn(async move { app.refresh_payment(&order_id, &customer).await })
        })
        .collect();
    webhook.await.expect("task").expect("recorded");
    for sync in syncs {
        sync.await.expect("task").expect("sync");
    }
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.stock().await, (9, 0, 1));
    assert_eq!(
        shop.scalar::<i64>(
            "SELECT COUNT(*) FROM audit_log WHERE entity_type = 'order' AND after_state = 'paid'"
        )
        .await,
        1
    );
    assert_eq!(shop.scalar::<i64>("SELECT COUNT(*) FROM outbox").await, 1);
}
both_backends!(risk_p7_client_refresh_and_webhook_race_and_only_one_applies);

async fn risk_g6_unverified_delivery_changes_nothing(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(1, "k").await;
    shop.verifier
        .register(succeeded("evt_forged", &placed.intent));
    for header in [None, Some("forged"), Some("")] {
        assert!(
            shop.app
                .receive_webhook(b"evt_forged", header)
                .await
                .is_err()
        );
    }
    assert_eq!(
        shop.scalar::<i64>("SELECT COUNT(*) FROM webhook_events")
            .await,
        0
    );
    assert_eq!(shop.status(&placed.order_id).await, "pending_payment");
}
both_backends!(risk_g6_unverified_delivery_changes_nothing);

async fn risk_a1_every_state_change_has_an_audit_record(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(2, "k").await;
    shop.provider
        .set_status(&placed.intent.id, PaymentStatus::RequiresAction);
    shop.deliver(&intent_event(
        "evt_a1_action",
        "payment_intent.requires_action",
        &placed.intent,
        PaymentStatus::RequiresAction,
    ))
    .await;
    shop.deliver(&succeeded("evt_a1_paid", &placed.intent))
        .await;
    let trail = shop
        .app
        .order_events(&placed.order_id)
        .await
        .expect("trail");
    let moves: Vec<(String, Option<String>, Option<String>)> = trail
        .iter()
        .map(|e| {
            (
                e.entity_type.clone(),
                e.before_state.clone(),
                e.after_state.clone(),
            )
        })
        .collect();
    let expected = [
        ("order", None, Some("pending_payment")),
        ("payment", None, Some("creating")),
        ("reservation", None, Some("held")),
        ("payment", Some("creating"), Some("requires_payment_method")),
        (
            "payment",
            Some("requires_payment_method"),
            Some("requires_action"),
        ),
        ("order", Some("pending_payment"), Some("requires_action")),
        ("payment", Some("requires_action"), Some("succeeded")),
        ("reservation", Some("held"), Some("committed")),
        ("order", Some("requires_action"), Some("paid")),
    ];
    let expected: Vec<(String, Option<String>, Option<String>)> = expected
        .iter()
        .map(|(entity, before, after)| {
            (
                (*entity).to_owned(),
                before.map(str::to_owned),
                after.map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        moves, expected,
        "who changed what, in order, before and after"
    );
    // Who and which request: the storefront's request id, then the webhook's event id.
    assert!(trail[..4].iter().all(|e| e.actor == "test"));
    assert_eq!(trail[4].request_id.as_deref(), Some("evt_a1_action"));
    assert!(
        trail[6..]
            .iter()
            .all(|e| e.actor == "webhook" && e.request_id.as_deref() == Some("evt_a1_paid"))
    );
    assert!(trail.iter().all(|e| e.created_at > 0));
}
both_backends!(risk_a1_every_state_change_has_an_audit_record);

async fn risk_w5_late_failure_of_an_earlier_attempt_does_not_undo_the_current_one(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(1, "k").await;
    // Attempt 1 failed; attempt 2 is waiting for 3-D Secure. Attempt 2's event comes first,
    // attempt 1's failure arrives late: the intent at the provider is requires_action.
    shop.provider
        .set_status(&placed.intent.id, PaymentStatus::RequiresAction);
    shop.deliver(&intent_event(
        "evt_attempt2",
        "payment_intent.requires_action",
        &placed.intent,
        PaymentStatus::RequiresAction,
    ))
    .await;
    let mut first_failure = placed.intent.clone();
    first_failure.last_error = Some("card_declined".into());
    shop.deliver(&intent_event(
        "evt_attempt1_failed",
        "payment_intent.payment_failed",
        &first_failure,
        PaymentStatus::RequiresPaymentMethod,
    ))
    .await;
    assert_eq!(
        shop.status(&placed.order_id).await,
        "requires_action",
        "the provider's current state wins"
    );
}
both_backends!(risk_w5_late_failure_of_an_earlier_attempt_does_not_undo_the_current_one);

async fn risk_g2_partial_shortfall_moves_no_stock_at_all(db: TestDb) {
    let shop = shop(db, 5).await;
    kassa_testkit::seed_product(&shop.app, "Pen", "PEN", 250, "eur", 1).await;
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "MUG", 1)
        .await
        .expect("mug");
    shop.app
        .add_cart_line(&cart.id, "PEN", 1)
        .await
        .expect("pen");
    let input = CheckoutInput {
        cart_id: cart.id.clone(),
        key_scope: "publishable".into(),
        idempotency_key: Some("two-skus".into()),
        email: "ada@example.com".into(),
        shipping: ShippingAddress {
            name: "Ada".into(),
            line1: "1 St".into(),
            city: "London".into(),
            postal_code: "N1".into(),
            country: "GB".into(),
        },
        expected_total_minor: 1500,
        flow: kassa_app::checkout::CheckoutFlow::Embedded,
        actor: Actor {
            kind: "test".into(),
            request_id: None,
            client_ip: None,
        },
    };
    let body: serde_json::Value = serde_json::from_str(
        &shop
            .app
            .checkout(input)
            .await
            .expect("checkout")
            .response
            .body,
    )
    .expect("json");
    let order_id = body["order"]["id"].as_str().expect("order").to_owned();
    let intent = shop.provider.intents().pop().expect("intent");
    // Both reservations were released; the mug is still in stock, the only pen was sold.
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query("UPDATE reservations SET status = 'released'")
        .execute(&pool)
        .await
        .expect("release");
    sqlx::query("UPDATE inventory_levels SET reserved = 0")
        .execute(&pool)
        .await
        .expect("unreserve");
    sqlx::query("UPDATE inventory_levels SET committed = 1 WHERE sku = 'PEN'")
        .execute(&pool)
        .await
        .expect("sold");
    pool.close().await;

    shop.deliver(&succeeded("evt_partial", &intent)).await;
    let order = shop.app.order(&order_id).await.expect("order");
    assert_eq!(order.status.as_str(), "pending_payment");
    assert!(
        order
            .needs_attention
            .as_deref()
            .is_some_and(|r| r.starts_with("stock_unavailable"))
    );
    assert_eq!(
        shop.stock().await,
        (5, 0, 0),
        "the mug's stock did not move"
    );
}
both_backends!(risk_g2_partial_shortfall_moves_no_stock_at_all);

/// A partial capture at the provider (or a report that says so) never makes an order paid: the
/// order is flagged, its payment and stock stay where they were.
async fn risk_w6_succeeded_with_less_captured_is_flagged_nothing_committed(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(2, "k").await;
    let total = placed.intent.amount_minor;
    for (n, received) in [1, 0, total - 1].into_iter().enumerate() {
        let mut event = succeeded(&format!("evt_short_{n}"), &placed.intent);
        if let ProviderEventObject::PaymentIntent(intent) = &mut event.object {
            intent.amount_received_minor = received;
        }
        shop.deliver(&event).await;
        let order = shop.app.order(&placed.order_id).await.expect("order");
        assert_eq!(
            order.status.as_str(),
            "pending_payment",
            "received {received}"
        );
        assert_eq!(order.captured_amount_minor, 0, "received {received}");
        assert!(
            order
                .needs_attention
                .as_deref()
                .is_some_and(|r| r.starts_with("capture_mismatch")),
            "received {received}: {:?}",
            order.needs_attention
        );
        assert_eq!(shop.stock().await, (8, 2, 0), "nothing committed");
    }
    assert_eq!(
        shop.scalar::<String>("SELECT status FROM payments").await,
        "requires_payment_method",
        "the payment did not move either"
    );
    // The full capture, reported afterwards, pays the order as usual.
    shop.deliver(&succeeded("evt_full", &placed.intent)).await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.stock().await, (8, 0, 2));
}
both_backends!(risk_w6_succeeded_with_less_captured_is_flagged_nothing_committed);

/// An event whose type and object disagree is recorded and not applied: a
/// `payment_intent.created` carrying `status: succeeded` pays nothing.
async fn risk_w6_event_type_and_object_status_must_agree(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(2, "k").await;
    for (id, kind) in [
        ("evt_created", "payment_intent.created"),
        ("evt_failed", "payment_intent.payment_failed"),
        ("evt_capturable", "payment_intent.amount_capturable_updated"),
        ("evt_other", "payment_intent.partially_funded"),
    ] {
        let event = intent_event(id, kind, &placed.intent, PaymentStatus::Succeeded);
        shop.deliver(&event).await;
        assert_eq!(
            shop.status(&placed.order_id).await,
            "pending_payment",
            "{kind}"
        );
    }
    assert_eq!(shop.stock().await, (8, 2, 0), "nothing committed");
    assert_eq!(
        shop.scalar::<i64>("SELECT COUNT(*) FROM webhook_events WHERE status = 'ignored'")
            .await,
        4,
        "each is recorded, as ignored"
    );
    let reason: String = shop
        .scalar("SELECT last_error FROM webhook_events WHERE id = 'evt_created'")
        .await;
    assert!(reason.contains("payment_intent.created"), "{reason}");
    // Types that announce the status their object carries still apply.
    let canceled = intent_event(
        "evt_canceled",
        "payment_intent.canceled",
        &placed.intent,
        PaymentStatus::Canceled,
    );
    shop.deliver(&canceled).await;
    assert_eq!(shop.status(&placed.order_id).await, "canceled");
}
both_backends!(risk_w6_event_type_and_object_status_must_agree);

/// A write its plan says must take, but does not (here a rogue trigger cancels the order behind
/// Kassa's lock as the payment moves), rolls the whole event back and flags the order; it is
/// never skipped with the rest applied.
async fn risk_w3_an_impossible_move_rolls_back_everything_and_flags_the_order(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(2, "k").await;
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    let rogue: &[&str] = if shop.db.url.starts_with("postgres") {
        &[
            "CREATE FUNCTION rogue() RETURNS trigger AS $$ BEGIN
                 UPDATE orders SET status = 'canceled' WHERE id = NEW.order_id; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER rogue AFTER UPDATE OF status ON payments FOR EACH ROW EXECUTE FUNCTION rogue()",
        ]
    } else {
        &[
            "CREATE TRIGGER rogue AFTER UPDATE OF status ON payments BEGIN
               UPDATE orders SET status = 'canceled' WHERE id = NEW.order_id; END",
        ]
    };
    for statement in rogue {
        sqlx::query(sqlx::AssertSqlSafe(*statement))
            .execute(&pool)
            .await
            .expect("trigger");
    }
    shop.deliver(&succeeded("evt_rogue", &placed.intent)).await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(
        order.status.as_str(),
        "pending_payment",
        "the event rolled back whole"
    );
    assert_eq!(shop.stock().await, (8, 2, 0), "no stock moved");
    assert!(
        order
            .needs_attention
            .as_deref()
            .is_some_and(|reason| reason.starts_with("impossible_move")),
        "{:?}",
        order.needs_attention
    );
    assert_eq!(
        shop.scalar::<String>("SELECT status FROM webhook_events WHERE id = 'evt_rogue'")
            .await,
        "failed",
        "kept for retry, not acknowledged as processed"
    );
    pool.close().await;
}
both_backends!(risk_w3_an_impossible_move_rolls_back_everything_and_flags_the_order);

/// A closed dispute stays closed whatever order its reports arrive in: a late `created` after
/// `closed (lost)` neither reopens it nor counts the loss twice.
async fn risk_w5_a_late_dispute_report_does_not_reopen_a_closed_one(db: TestDb) {
    let shop = shop(db, 10).await;
    let placed = shop.place(2, "k").await;
    shop.deliver(&succeeded("evt_paid", &placed.intent)).await;
    let dispute = |status: &str| ProviderDispute {
        id: "dp_late".into(),
        charge_id: "ch_1".into(),
        payment_intent_id: Some(placed.intent.id.clone()),
        amount_minor: 2500,
        currency: "eur".into(),
        status: status.into(),
        reason: Some("fraudulent".into()),
        evidence_due_by: None,
    };
    let deliver = |id: &'static str, kind: &'static str, status: &str| ProviderEvent {
        id: id.into(),
        event_type: kind.into(),
        created_secs: 0,
        object: ProviderEventObject::Dispute(dispute(status)),
    };
    shop.deliver(&deliver("evt_closed", "charge.dispute.closed", "lost"))
        .await;
    shop.deliver(&deliver(
        "evt_created",
        "charge.dispute.created",
        "needs_response",
    ))
    .await;
    shop.deliver(&deliver(
        "evt_closed_again",
        "charge.dispute.closed",
        "lost",
    ))
    .await;
    let order = shop.app.order(&placed.order_id).await.expect("order");
    assert_eq!(order.status.as_str(), "paid");
    assert_eq!(order.disputes[0].status, "lost");
    assert_eq!(order.dispute_lost_minor, 2500, "counted once");
}
both_backends!(risk_w5_a_late_dispute_report_does_not_reopen_a_closed_one);
