//! Risk N1 on SQLite and PostgreSQL: an order flagged for a person always has a way out. For
//! every reason Kassa flags an order, the flag is provoked the way it happens, and then resolved
//! with an action its reason takes (`App::resolve_attention`, behind `POST
//! /v1/orders/{id}/resolve` and `kassa resolve`): the flag clears only through the action, the
//! money, stock and status move as the action says, the audit trail names who and why, and the
//! order's background work (scheduled capture, the janitor, the completer) takes it back.

use std::sync::Arc;
use std::time::Duration;

use kassa_app::App;
use kassa_app::AppError;
use kassa_app::attention::ResolveRequest;
use kassa_app::checkout::{CheckoutFlow, UNKNOWN_OUTCOME_GIVE_UP_SECS};
use kassa_app::order_commands::Requester;
use kassa_app::ports::{
    Actor, AuditRecord, CaptureMethod, Clock, MetricsStore, OrderRecord, PaymentProvider,
    ProviderEvent, ProviderEventObject, ProviderPaymentIntent, SessionStatus,
};
use kassa_app::reconcile::Quietly;
use kassa_app::refunds::RefundInput;
use kassa_domain::attention::flag_code;
use kassa_domain::payment::PaymentStatus;
use kassa_testkit::provider::{FakeProvider, Script};
use kassa_testkit::shop::{EmulatedShop, Placed, STOCK, UNIT, actor, checkout_input};
use kassa_testkit::verifier::MemoryVerifier;
use kassa_testkit::{TestClock, TestDb, both_backends};
use serde_json::{Value, json};

/// Who resolves, as the HTTP edge records the operator.
fn operator() -> Actor {
    Actor {
        kind: "operator (secret key)".into(),
        request_id: Some("req_resolve".into()),
        client_ip: Some("203.0.113.9".into()),
    }
}

async fn resolve(
    app: &App,
    order_id: &str,
    action: &str,
    note: &str,
) -> Result<OrderRecord, AppError> {
    let request = ResolveRequest {
        action: action.into(),
        note: note.into(),
    };
    app.resolve_attention(order_id, request, &operator()).await
}

/// The order's flag's reason code, while it is flagged.
async fn flag_of(app: &App, order_id: &str) -> Option<String> {
    let order = app.order(order_id).await.expect("order");
    order
        .needs_attention
        .map(|flag| flag_code(&flag).to_owned())
}

/// The order's resolutions in its audit trail, oldest first.
async fn resolutions(app: &App, order_id: &str) -> Vec<AuditRecord> {
    app.order_events(order_id)
        .await
        .expect("audit")
        .into_iter()
        .filter(|event| event.action == "attention_resolved")
        .collect()
}

/// The last resolution says which flag, which action, who and why.
async fn assert_resolved_by(app: &App, order_id: &str, code: &str, action: &str, note: &str) {
    let records = resolutions(app, order_id).await;
    let record = records.last().expect("a resolution is audited");
    assert_eq!(
        (
            record.before_state.as_deref(),
            record.after_state.as_deref(),
            record.detail.as_deref(),
            record.actor.as_str(),
            record.request_id.as_deref(),
            record.client_ip.as_deref(),
        ),
        (
            Some(code),
            Some(action),
            Some(note),
            "operator (secret key)",
            Some("req_resolve"),
            Some("203.0.113.9"),
        )
    );
}

/// A refusal of a resolution: 409 `invalid_state`, with its message.
fn refused(result: Result<OrderRecord, AppError>) -> String {
    match result {
        Err(AppError::InvalidState { message }) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn execute(url: &str, sql: String) {
    let pool = sqlx::AnyPool::connect(url).await.expect("pool");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .expect("statement");
    pool.close().await;
}

async fn count(url: &str, sql: String) -> i64 {
    let pool = sqlx::AnyPool::connect(url).await.expect("pool");
    let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    value
}

async fn attention_notifications(url: &str, order_id: &str) -> i64 {
    count(
        url,
        format!(
            "SELECT COUNT(*) FROM outbox WHERE topic = 'order.needs_attention'
             AND payload LIKE '%{order_id}%'"
        ),
    )
    .await
}

/// A shop on the scripted provider, for exact fault timing; events are fed in by id.
struct FakeShop {
    app: App,
    provider: Arc<FakeProvider>,
    verifier: Arc<MemoryVerifier>,
    clock: Arc<TestClock>,
    db: TestDb,
}

async fn fake_shop(db: TestDb, capture: CaptureMethod) -> FakeShop {
    let provider = Arc::new(FakeProvider::new());
    let verifier = Arc::new(MemoryVerifier::default());
    let clock = TestClock::new();
    let settings = kassa_app::Settings {
        capture_method: capture,
        ..kassa_testkit::test_settings()
    };
    let app = kassa_testkit::app_with_settings(
        &db,
        provider.clone(),
        clock.clone(),
        verifier.clone(),
        settings,
    );
    kassa_testkit::seed_product(&app, "Mug", "MUG", UNIT, "eur", 10).await;
    FakeShop {
        app,
        provider,
        verifier,
        clock,
        db,
    }
}

impl FakeShop {
    /// A checkout of `quantity` mugs through `flow`: the order id, whatever the answer.
    async fn place(&self, quantity: i64, flow: CheckoutFlow) -> (String, Result<Value, AppError>) {
        let cart = self.app.create_cart("eur").await.expect("cart");
        self.app
            .add_cart_line(&cart.id, "MUG", quantity)
            .await
            .expect("line");
        let input = checkout_input(&cart.id, quantity * UNIT, &cart.id, flow);
        let reply = self
            .app
            .checkout(input)
            .await
            .map(|reply| serde_json::from_str::<Value>(&reply.response.body).expect("json"));
        let order_id = text_of(
            &self.db.url,
            format!("SELECT id FROM orders WHERE cart_id = '{}'", cart.id),
        )
        .await;
        (order_id, reply)
    }

    /// An embedded checkout its PaymentIntent was created for: (order, intent).
    async fn placed(&self, quantity: i64) -> (String, ProviderPaymentIntent) {
        let (order_id, reply) = self.place(quantity, CheckoutFlow::Embedded).await;
        reply.expect("checkout");
        (order_id.clone(), self.intent_of(&order_id))
    }

    fn intent_of(&self, order_id: &str) -> ProviderPaymentIntent {
        self.provider
            .intents()
            .into_iter()
            .find(|intent| intent.metadata.iter().any(|(_, value)| value == order_id))
            .expect("the order's intent")
    }

    /// Delivers through the endpoint's path: verify, record, apply.
    async fn deliver(&self, id: &str, kind: &str, intent: &ProviderPaymentIntent) {
        let event = ProviderEvent {
            id: id.into(),
            event_type: kind.into(),
            created_secs: 0,
            object: ProviderEventObject::PaymentIntent(intent.clone()),
        };
        self.verifier.register(event);
        self.app
            .receive_webhook(id.as_bytes(), Some("valid"))
            .await
            .expect("recorded");
    }

    /// The intent as the provider holds it now, reported by its `kind` event.
    async fn report(&self, id: &str, kind: &str, intent_id: &str) {
        let intent = self
            .provider
            .retrieve_payment_intent(intent_id)
            .await
            .expect("intent");
        self.deliver(id, kind, &intent).await;
    }

    async fn stock(&self) -> (i64, i64, i64) {
        let level = &self.app.inventory("MUG").await.expect("inventory")[0].stock;
        (level.available(), level.reserved, level.committed)
    }
}

async fn text_of(url: &str, sql: String) -> String {
    let pool = sqlx::AnyPool::connect(url).await.expect("pool");
    let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&pool)
        .await
        .expect("text");
    pool.close().await;
    value
}

/// `amount_mismatch` on an authorized order: scheduled capture passes over it (the
/// authorization would lapse); `accept` applies what Stripe holds, the flag clears, the count
/// by reason falls, and the next capture round captures it.
async fn risk_n1_amount_mismatch_is_accepted_and_the_capture_schedule_resumes(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Manual).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    shop.confirm(&placed, "pm_card_visa").await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "authorized");
    // Stripe's own report delivered again under another id, with another amount.
    let events = shop.events().await;
    let authorized = events
        .iter()
        .find(|e| {
            e["type"] == "payment_intent.amount_capturable_updated"
                && e["data"]["object"]["id"] == placed.intent_id.as_str()
        })
        .expect("Stripe's amount_capturable_updated");
    let mut forged = authorized.clone();
    forged["id"] = json!("evt_another_amount");
    forged["data"]["object"]["amount"] = json!(2 * UNIT + 1);
    shop.deliver(&forged).await.expect("recorded");
    assert_eq!(
        flag_of(&shop.app, &placed.order_id).await.as_deref(),
        Some("amount_mismatch")
    );
    let gauges = shop
        .db
        .store
        .gauges(shop.clock.now_secs())
        .await
        .expect("gauges");
    assert!(
        gauges
            .attention_by_reason
            .contains(&("amount_mismatch".into(), 1)),
        "{:?}",
        gauges.attention_by_reason
    );
    assert_eq!(
        attention_notifications(&shop.db.url, &placed.order_id).await,
        1
    );

    // The window closes: nobody captures a flagged order behind the person's back.
    shop.clock
        .advance(kassa_app::Settings::default().modification_window_secs + 1);
    assert_eq!(shop.app.capture_due_orders(10).await.expect("round"), 0);
    assert_eq!(shop.status(&placed.order_id).await, "authorized");

    let note = "checked at Stripe: 2500 eur authorized, the report was not about this payment";
    let order = resolve(&shop.app, &placed.order_id, "accept", note)
        .await
        .expect("resolved");
    assert_eq!(order.needs_attention, None);
    assert_resolved_by(
        &shop.app,
        &placed.order_id,
        "amount_mismatch",
        "accept",
        note,
    )
    .await;
    let gauges = shop
        .db
        .store
        .gauges(shop.clock.now_secs())
        .await
        .expect("gauges");
    assert!(gauges.attention_by_reason.is_empty(), "{gauges:?}");

    // The schedule takes it back: captured and paid.
    assert_eq!(shop.app.capture_due_orders(10).await.expect("round"), 1);
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    assert_eq!(shop.intent(&placed.intent_id).await["status"], "succeeded");
    assert_eq!(shop.stock("MUG").await, (STOCK - 2, 0, 2));
}
both_backends!(risk_n1_amount_mismatch_is_accepted_and_the_capture_schedule_resumes);

/// `capture_mismatch`: Stripe captured less than Kassa decided (a partial capture from its
/// dashboard). The order stays authorized and flagged; `accept` makes what Stripe captured the
/// capture Kassa decided, and the order is paid with it.
async fn risk_n1_capture_mismatch_accepts_what_stripe_captured(db: TestDb) {
    let shop = fake_shop(db, CaptureMethod::Manual).await;
    let (order_id, intent) = shop.placed(2).await;
    shop.provider
        .set_status(&intent.id, PaymentStatus::RequiresCapture);
    shop.report(
        "evt_authorized",
        "payment_intent.amount_capturable_updated",
        &intent.id,
    )
    .await;
    assert_eq!(
        shop.app
            .order(&order_id)
            .await
            .expect("order")
            .status
            .as_str(),
        "authorized"
    );
    shop.provider
        .capture_payment_intent(&intent.id, Some(2 * UNIT - 500), None, "dashboard")
        .await
        .expect("captured at the dashboard");
    shop.report("evt_short", "payment_intent.succeeded", &intent.id)
        .await;
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("capture_mismatch")
    );
    assert_eq!(shop.stock().await, (8, 2, 0), "nothing committed");

    let refusal = refused(resolve(&shop.app, &order_id, "commit", "commit it").await);
    assert!(refusal.contains("accept or dismiss"), "{refusal}");
    let note = "captured 2000 at the dashboard on purpose: one mug was damaged";
    let order = resolve(&shop.app, &order_id, "accept", note)
        .await
        .expect("resolved");
    assert_eq!(order.status.as_str(), "paid");
    assert_eq!(order.captured_amount_minor, 2 * UNIT - 500);
    assert_eq!(order.needs_attention, None);
    assert_eq!(shop.stock().await, (8, 0, 2), "sold");
    assert_resolved_by(&shop.app, &order_id, "capture_mismatch", "accept", note).await;
    let accepted = shop
        .app
        .order_events(&order_id)
        .await
        .expect("audit")
        .into_iter()
        .any(|e| e.action == "capture_accepted");
    assert!(accepted, "what Kassa captures changed on the record");
}
both_backends!(risk_n1_capture_mismatch_accepts_what_stripe_captured);

/// `paid_while_paid`: a payment succeeded for an order the database already says is paid (a
/// row edited by hand). Only a person can say what it is; `dismiss` clears the flag, and a flag
/// raised after that is announced again.
async fn risk_n1_paid_while_paid_is_dismissed_and_a_later_flag_is_announced_again(db: TestDb) {
    let shop = fake_shop(db, CaptureMethod::Automatic).await;
    let (order_id, intent) = shop.placed(1).await;
    execute(
        &shop.db.url,
        format!("UPDATE orders SET status = 'paid' WHERE id = '{order_id}'"),
    )
    .await;
    shop.provider
        .set_status(&intent.id, PaymentStatus::Succeeded);
    shop.report("evt_paid", "payment_intent.succeeded", &intent.id)
        .await;
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("paid_while_paid")
    );
    let refusal = refused(resolve(&shop.app, &order_id, "refund", "give it back").await);
    assert!(refusal.contains("resolved by dismiss"), "{refusal}");
    let invalid = resolve(&shop.app, &order_id, "explode", "x").await;
    assert!(
        matches!(&invalid, Err(AppError::InvalidRequest { param: Some(p), .. }) if p == "action"),
        "{invalid:?}"
    );
    let no_note = resolve(&shop.app, &order_id, "dismiss", " \u{202e} ").await;
    assert!(
        matches!(&no_note, Err(AppError::InvalidRequest { param: Some(p), .. }) if p == "note"),
        "{no_note:?}"
    );
    assert!(
        flag_of(&shop.app, &order_id).await.is_some(),
        "refusals change nothing"
    );

    let note = "hand-edited row put back; one payment at Stripe, nothing to return";
    resolve(&shop.app, &order_id, "dismiss", note)
        .await
        .expect("resolved");
    assert_eq!(flag_of(&shop.app, &order_id).await, None);
    assert_resolved_by(&shop.app, &order_id, "paid_while_paid", "dismiss", note).await;
    assert_eq!(attention_notifications(&shop.db.url, &order_id).await, 1);

    let mut other = shop
        .provider
        .retrieve_payment_intent(&intent.id)
        .await
        .expect("intent");
    other.amount_minor = 1;
    shop.deliver("evt_other_amount", "payment_intent.succeeded", &other)
        .await;
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("amount_mismatch")
    );
    assert_eq!(
        attention_notifications(&shop.db.url, &order_id).await,
        2,
        "a new flag after a resolution is announced"
    );
    let again = resolve(&shop.app, &order_id, "dismiss", note).await;
    assert!(again.is_ok(), "{again:?}");
    let again = resolve(&shop.app, &order_id, "dismiss", note).await;
    assert!(
        refused(again).contains("does not need attention"),
        "a second resolution finds nothing to resolve"
    );
}
both_backends!(risk_n1_paid_while_paid_is_dismissed_and_a_later_flag_is_announced_again);

/// Risk G2: a customer's hold ran out while they sat on the payment page (its reservation
/// released), another customer bought every mug left, and then the first payment succeeded:
/// money taken, stock gone, the order flagged `stock_unavailable` and still `pending_payment`.
async fn stock_gone(db: TestDb) -> (EmulatedShop, Placed) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let late = shop.checkout(&[("MUG", 2)]).await;
    execute(
        &shop.db.url,
        format!(
            "UPDATE reservations SET status = 'released' WHERE order_id = '{}'",
            late.order_id
        ),
    )
    .await;
    execute(
        &shop.db.url,
        "UPDATE inventory_levels SET reserved = reserved - 2 WHERE sku = 'MUG'".into(),
    )
    .await;
    let other = shop.paid(&[("MUG", STOCK)]).await;
    assert_eq!(shop.status(&other.order_id).await, "paid");
    shop.confirm(&late, "pm_card_visa").await;
    shop.deliver_events().await;
    let order = shop.app.order(&late.order_id).await.expect("order");
    assert_eq!(order.status.as_str(), "pending_payment");
    assert_eq!(
        order.needs_attention.as_deref().map(flag_code),
        Some("stock_unavailable")
    );
    assert_eq!(shop.stock("MUG").await, (0, 0, STOCK));
    (shop, late)
}

/// Money taken, stock gone: `refund` gives the money back in full at Stripe (with a key derived
/// from Kassa's ids) and cancels the order. `commit` is refused while the stock is not there.
async fn risk_n1_money_taken_stock_gone_is_refunded_in_full_and_canceled(db: TestDb) {
    let (shop, late) = stock_gone(db).await;
    let refusal = refused(resolve(&shop.app, &late.order_id, "commit", "sell it").await);
    assert!(refusal.contains("still not available"), "{refusal}");
    let refusal = refused(resolve(&shop.app, &late.order_id, "dismiss", "ignore").await);
    assert!(refusal.contains("refund or commit"), "{refusal}");
    assert_eq!(
        flag_of(&shop.app, &late.order_id).await.as_deref(),
        Some("stock_unavailable")
    );

    let note = "sold out; customer told and refunded in full";
    let order = resolve(&shop.app, &late.order_id, "refund", note)
        .await
        .expect("resolved");
    assert_eq!(order.status.as_str(), "canceled");
    assert_eq!(order.needs_attention, None);
    assert_eq!(order.captured_amount_minor, 2 * UNIT);
    assert_eq!(shop.provider_refunds(&late.intent_id).await, (1, 2 * UNIT));
    shop.deliver_events().await;
    let order = shop.app.order(&late.order_id).await.expect("order");
    assert_eq!(order.refunded_amount_minor, 2 * UNIT);
    assert_eq!(order.refunds.len(), 1);
    assert!(
        order.refunds[0].id.starts_with("ref_resolve_"),
        "{:?}",
        order.refunds
    );
    assert_eq!(order.refunds[0].status.as_str(), "succeeded");
    assert_eq!(order.status.as_str(), "canceled");
    assert_eq!(
        shop.stock("MUG").await,
        (0, 0, STOCK),
        "the other sale stands"
    );
    assert_resolved_by(
        &shop.app,
        &late.order_id,
        "stock_unavailable",
        "refund",
        note,
    )
    .await;
    let twice = resolve(&shop.app, &late.order_id, "refund", note).await;
    assert!(refused(twice).contains("does not need attention"));
    assert_eq!(shop.provider_refunds(&late.intent_id).await, (1, 2 * UNIT));
}
both_backends!(risk_n1_money_taken_stock_gone_is_refunded_in_full_and_canceled);

/// Money taken, stock gone, then stock back (a delivery came in): `commit` takes the stock
/// again and marks the order paid with what Stripe received; nothing is refunded.
async fn risk_n1_money_taken_stock_back_is_committed_and_paid(db: TestDb) {
    let (shop, late) = stock_gone(db).await;
    shop.app
        .set_on_hand("MUG", None, STOCK + 2)
        .await
        .expect("stock is back");
    let note = "two mugs came back from the supplier";
    let order = resolve(&shop.app, &late.order_id, "commit", note)
        .await
        .expect("resolved");
    assert_eq!(order.status.as_str(), "paid");
    assert_eq!(order.captured_amount_minor, 2 * UNIT);
    assert_eq!(order.needs_attention, None);
    assert_eq!(shop.stock("MUG").await, (0, 0, STOCK + 2));
    assert_eq!(shop.provider_refunds(&late.intent_id).await, (0, 0));
    assert_eq!(
        count(
            &shop.db.url,
            format!(
                "SELECT COUNT(*) FROM outbox WHERE topic = 'order.paid' AND payload LIKE '%{}%'",
                late.order_id
            )
        )
        .await,
        1
    );
    assert_resolved_by(
        &shop.app,
        &late.order_id,
        "stock_unavailable",
        "commit",
        note,
    )
    .await;
}
both_backends!(risk_n1_money_taken_stock_back_is_committed_and_paid);

/// `unknown_outcome`: Stripe never answered whether the checkout's PaymentIntent was made, and
/// the completer gave up. While flagged the janitor leaves its stock held; `retry` asks Stripe
/// again with the same key (a still-unknown answer leaves the flag), records the intent, and the
/// janitor takes the abandoned checkout back.
async fn risk_n1_unknown_outcome_is_retried_with_the_same_key(db: TestDb) {
    let shop = fake_shop(db, CaptureMethod::Automatic).await;
    shop.provider.script([Script::LostRequest]);
    let (order_id, reply) = shop.place(2, CheckoutFlow::Embedded).await;
    assert!(
        matches!(reply, Err(AppError::ProviderUnavailable { .. })),
        "{reply:?}"
    );
    shop.clock.advance(UNKNOWN_OUTCOME_GIVE_UP_SECS + 1);
    shop.app
        .complete_stalled_checkouts(10)
        .await
        .expect("round");
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("unknown_outcome")
    );
    shop.app.run_janitor().await.expect("janitor");
    assert_eq!(shop.stock().await, (8, 2, 0), "held while a person decides");

    shop.provider.script([Script::LostRequest]);
    let note = "Stripe was down; asking again";
    let still = resolve(&shop.app, &order_id, "retry", note).await;
    assert!(
        matches!(still, Err(AppError::ProviderUnavailable { .. })),
        "{still:?}"
    );
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("unknown_outcome"),
        "an answer still unknown resolves nothing"
    );
    let order = resolve(&shop.app, &order_id, "retry", note)
        .await
        .expect("resolved");
    assert_eq!(order.needs_attention, None);
    let payment = order.payment.expect("payment");
    assert_eq!(
        payment.payment_intent_id,
        Some(shop.intent_of(&order_id).id)
    );
    assert_eq!(
        shop.provider.intents().len(),
        1,
        "one intent, under one key"
    );
    assert_resolved_by(&shop.app, &order_id, "unknown_outcome", "retry", note).await;

    // The completer has nothing left to do; the janitor takes the abandoned checkout back.
    shop.clock.advance(60);
    shop.app
        .complete_stalled_checkouts(10)
        .await
        .expect("round");
    assert_eq!(
        flag_of(&shop.app, &order_id).await,
        None,
        "not flagged again"
    );
    let report = shop.app.run_janitor().await.expect("janitor");
    assert_eq!(report.canceled, 1, "{report:?}");
    assert_eq!(
        shop.app
            .order(&order_id)
            .await
            .expect("order")
            .status
            .as_str(),
        "canceled"
    );
    assert_eq!(shop.stock().await, (10, 0, 0));
}
both_backends!(risk_n1_unknown_outcome_is_retried_with_the_same_key);

/// `hosted_page_without_payment`: a cancel found the order's hosted page complete with no
/// PaymentIntent behind it. `retry` asks Stripe again (refused while there is still none);
/// `cancel` cancels the order, which nothing can be charged for, and releases its stock.
async fn risk_n1_a_hosted_page_without_payment_is_canceled_and_its_stock_released(db: TestDb) {
    let shop = fake_shop(db, CaptureMethod::Automatic).await;
    let (order_id, reply) = shop.place(2, CheckoutFlow::Hosted).await;
    let session_id = reply.expect("hosted checkout")["checkout_session"]["id"]
        .as_str()
        .expect("session")
        .to_owned();
    shop.provider
        .set_session(&session_id, SessionStatus::Complete, None);
    let cancel = shop
        .app
        .cancel_order(&order_id, &Requester::Operator, &actor())
        .await;
    assert!(
        matches!(cancel, Err(AppError::InvalidState { .. })),
        "{cancel:?}"
    );
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("hosted_page_without_payment")
    );
    assert_eq!(shop.stock().await, (8, 2, 0));

    let refusal = refused(resolve(&shop.app, &order_id, "retry", "ask again").await);
    assert!(refusal.contains("no PaymentIntent"), "{refusal}");
    let note = "checked at Stripe: the page took no payment";
    let order = resolve(&shop.app, &order_id, "cancel", note)
        .await
        .expect("resolved");
    assert_eq!(order.status.as_str(), "canceled");
    assert_eq!(order.needs_attention, None);
    assert_eq!(shop.stock().await, (10, 0, 0), "released");
    assert_resolved_by(
        &shop.app,
        &order_id,
        "hosted_page_without_payment",
        "cancel",
        note,
    )
    .await;
}
both_backends!(risk_n1_a_hosted_page_without_payment_is_canceled_and_its_stock_released);

/// Waits until the emulator has failed every refund of `intent` (`pm_card_refundFail` fails
/// them shortly after they succeed), then delivers its events.
async fn until_refunds_fail(shop: &EmulatedShop, intent: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while shop.provider_refunds(intent).await.1 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the emulator failed the refund"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shop.deliver_events().await;
}

/// `refund_reversed`: a refund Stripe reported succeeded failed later. `refund` asks Stripe for
/// the failed amount again under a new key; when that fails too the order is flagged (and
/// announced) again, and once the person paid the customer another way, `dismiss` clears it for
/// good: the same failure is not raised again.
async fn risk_n1_a_reversed_refund_is_made_again_or_dismissed(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.checkout(&[("MUG", 2)]).await;
    shop.confirm(&placed, "pm_card_refundFail").await;
    shop.deliver_events().await;
    let first = shop
        .app
        .create_refund(RefundInput {
            order_id: placed.order_id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some("will-fail".into()),
            amount_minor: Some(500),
            reason: None,
            restock: false,
            actor: actor(),
        })
        .await
        .expect("refund");
    assert_eq!(first.status.as_str(), "succeeded");
    until_refunds_fail(&shop, &placed.intent_id).await;
    assert_eq!(
        flag_of(&shop.app, &placed.order_id).await.as_deref(),
        Some("refund_reversed")
    );

    let note = "refunding the 500 again";
    let order = resolve(&shop.app, &placed.order_id, "refund", note)
        .await
        .expect("resolved");
    assert_eq!(order.needs_attention, None);
    assert_eq!(order.refunds.len(), 2);
    let again = order
        .refunds
        .iter()
        .find(|refund| refund.id.starts_with("ref_resolve_"))
        .expect("the resolution's refund");
    assert_eq!(again.amount_minor, 500);
    assert_eq!(shop.provider_refunds(&placed.intent_id).await.0, 2);
    assert_resolved_by(
        &shop.app,
        &placed.order_id,
        "refund_reversed",
        "refund",
        note,
    )
    .await;

    // That card fails every refund: flagged again, and announced again.
    until_refunds_fail(&shop, &placed.intent_id).await;
    assert_eq!(
        flag_of(&shop.app, &placed.order_id).await.as_deref(),
        Some("refund_reversed")
    );
    assert_eq!(
        attention_notifications(&shop.db.url, &placed.order_id).await,
        2
    );
    let note = "paid the customer 500 by bank transfer";
    resolve(&shop.app, &placed.order_id, "dismiss", note)
        .await
        .expect("resolved");
    shop.deliver_events().await;
    assert_eq!(flag_of(&shop.app, &placed.order_id).await, None);
    assert_resolved_by(
        &shop.app,
        &placed.order_id,
        "refund_reversed",
        "dismiss",
        note,
    )
    .await;
}
both_backends!(risk_n1_a_reversed_refund_is_made_again_or_dismissed);

/// `kassa_refund_failed`: the refund of a cancel after capture was refused. `refund` asks for it
/// again under a new key; it is made, with the cancel's restock, and the order is refunded.
async fn risk_n1_a_refused_kassa_refund_is_made_again(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let placed = shop.paid(&[("MUG", 1)]).await;
    shop.fault("POST /v1/refunds", json!([{"status": 400}]))
        .await;
    let refused_cancel = shop
        .app
        .cancel_order(&placed.order_id, &Requester::Operator, &actor())
        .await;
    assert!(
        matches!(refused_cancel, Err(AppError::InvalidState { .. })),
        "{refused_cancel:?}"
    );
    assert_eq!(
        flag_of(&shop.app, &placed.order_id).await.as_deref(),
        Some("kassa_refund_failed")
    );
    assert_eq!(shop.stock("MUG").await, (STOCK - 1, 0, 1));

    let note = "Stripe refused once; refunding again";
    let order = resolve(&shop.app, &placed.order_id, "refund", note)
        .await
        .expect("resolved");
    assert_eq!(order.needs_attention, None);
    assert_eq!(order.status.as_str(), "refunded");
    assert_eq!(order.refunded_amount_minor, UNIT);
    assert_eq!(shop.provider_refunds(&placed.intent_id).await, (1, UNIT));
    assert_eq!(
        shop.stock("MUG").await,
        (STOCK, 0, 0),
        "the cancel's restock"
    );
    shop.deliver_events().await;
    assert_eq!(
        flag_of(&shop.app, &placed.order_id).await,
        None,
        "the failure a person resolved is not raised again"
    );
    assert_resolved_by(
        &shop.app,
        &placed.order_id,
        "kassa_refund_failed",
        "refund",
        note,
    )
    .await;
}
both_backends!(risk_n1_a_refused_kassa_refund_is_made_again);

/// `credits_already_spent`: a refunded credit pack's credits were spent. Nothing can take them
/// back; `dismiss` records that a person settled it.
async fn risk_n1_spent_credits_are_acknowledged(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    shop.app
        .create_product(kassa_app::catalog::NewProduct {
            seller_id: None,
            name: "100 credits".into(),
            variants: vec![kassa_app::catalog::NewVariant {
                sku: "PACK".into(),
                unit_amount_minor: 500,
                currency: "eur".into(),
                attributes: std::collections::BTreeMap::new(),
                credits: 100,
            }],
        })
        .await
        .expect("pack");
    shop.app.set_on_hand("PACK", None, 10).await.expect("stock");
    let cart = shop.app.create_cart("eur").await.expect("cart");
    shop.app
        .add_cart_line(&cart.id, "PACK", 1)
        .await
        .expect("line");
    let reply = shop
        .app
        .checkout(checkout_input(
            &cart.id,
            500,
            "pack",
            CheckoutFlow::Embedded,
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
    shop.deliver_events().await;
    let customer = text_of(
        &shop.db.url,
        "SELECT id FROM customers WHERE email = 'ada@example.com'".into(),
    )
    .await;
    shop.app
        .debit_credits(kassa_app::subscriptions::DebitInput {
            customer_id: customer,
            key_scope: "secret".into(),
            idempotency_key: Some("spend".into()),
            amount: 60,
            reason: None,
        })
        .await
        .expect("spent");
    shop.app
        .create_refund(RefundInput {
            order_id: placed.order_id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some("refund-all".into()),
            amount_minor: None,
            reason: None,
            restock: false,
            actor: actor(),
        })
        .await
        .expect("refunded");
    shop.deliver_events().await;
    assert_eq!(
        flag_of(&shop.app, &placed.order_id).await.as_deref(),
        Some("credits_already_spent")
    );
    let refusal = refused(resolve(&shop.app, &placed.order_id, "refund", "again").await);
    assert!(refusal.contains("resolved by dismiss"), "{refusal}");
    let note = "60 credits written off with the customer's agreement";
    resolve(&shop.app, &placed.order_id, "dismiss", note)
        .await
        .expect("resolved");
    shop.deliver_events().await;
    assert_eq!(flag_of(&shop.app, &placed.order_id).await, None);
    assert_resolved_by(
        &shop.app,
        &placed.order_id,
        "credits_already_spent",
        "dismiss",
        note,
    )
    .await;
}
both_backends!(risk_n1_spent_credits_are_acknowledged);

/// `impossible_move`: a write its plan said must take did not (here a rogue trigger cancels the
/// order behind Kassa's lock). `accept` re-applies what Stripe holds; refused (nothing kept)
/// while the cause stands, it pays the order once a person removed it.
async fn risk_n1_an_impossible_move_is_accepted_once_its_cause_is_gone(db: TestDb) {
    let shop = fake_shop(db, CaptureMethod::Automatic).await;
    let (order_id, intent) = shop.placed(2).await;
    let postgres = shop.db.url.starts_with("postgres");
    let rogue: &[&str] = if postgres {
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
        execute(&shop.db.url, (*statement).to_owned()).await;
    }
    shop.provider
        .set_status(&intent.id, PaymentStatus::Succeeded);
    shop.report("evt_rogue", "payment_intent.succeeded", &intent.id)
        .await;
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("impossible_move")
    );
    let refusal = refused(resolve(&shop.app, &order_id, "accept", "try again").await);
    assert!(refusal.contains("failed again"), "{refusal}");
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("impossible_move")
    );
    assert_eq!(shop.stock().await, (8, 2, 0), "nothing kept");

    let drop: &[&str] = if postgres {
        &["DROP TRIGGER rogue ON payments", "DROP FUNCTION rogue()"]
    } else {
        &["DROP TRIGGER rogue"]
    };
    for statement in drop {
        execute(&shop.db.url, (*statement).to_owned()).await;
    }
    let note = "removed the trigger a migration script left behind";
    let order = resolve(&shop.app, &order_id, "accept", note)
        .await
        .expect("resolved");
    assert_eq!(order.status.as_str(), "paid");
    assert_eq!(order.needs_attention, None);
    assert_eq!(shop.stock().await, (8, 0, 2));
    // The event that failed is retried by the inbox: already applied, nothing flags again.
    shop.clock.advance(60);
    shop.app.process_inbox(10).await.expect("inbox");
    assert_eq!(flag_of(&shop.app, &order_id).await, None);
    assert_resolved_by(&shop.app, &order_id, "impossible_move", "accept", note).await;
}
both_backends!(risk_n1_an_impossible_move_is_accepted_once_its_cause_is_gone);

/// `reconciliation`: reconciliation found a payment Stripe does not know. `accept` is refused
/// while Stripe does not know it; once a person put the row right, `dismiss` clears the flag and
/// the janitor takes the abandoned checkout back.
async fn risk_n1_a_reconciliation_difference_is_dismissed_once_put_right(db: TestDb) {
    let shop = fake_shop(db, CaptureMethod::Automatic).await;
    let (order_id, intent) = shop.placed(2).await;
    execute(
        &shop.db.url,
        format!(
            "UPDATE payments SET provider_payment_intent_id = 'pi_gone' WHERE order_id = '{order_id}'"
        ),
    )
    .await;
    let report = shop.app.reconcile(&Quietly).await.expect("reconciled");
    assert_eq!(report.differences.len(), 1, "{report:?}");
    assert_eq!(
        flag_of(&shop.app, &order_id).await.as_deref(),
        Some("reconciliation")
    );
    shop.clock
        .advance(kassa_app::Settings::default().reservation_ttl_secs + 1);
    shop.app.run_janitor().await.expect("janitor");
    assert_eq!(shop.stock().await, (8, 2, 0), "held while flagged");

    let refusal = refused(resolve(&shop.app, &order_id, "accept", "apply it").await);
    assert!(refusal.contains("dismiss once checked"), "{refusal}");
    execute(
        &shop.db.url,
        format!(
            "UPDATE payments SET provider_payment_intent_id = '{}' WHERE order_id = '{order_id}'",
            intent.id
        ),
    )
    .await;
    let note = "the intent id was overwritten by a script; put back from Stripe's records";
    resolve(&shop.app, &order_id, "dismiss", note)
        .await
        .expect("resolved");
    assert_resolved_by(&shop.app, &order_id, "reconciliation", "dismiss", note).await;
    let report = shop.app.run_janitor().await.expect("janitor");
    assert_eq!(report.canceled, 1, "{report:?}");
    assert_eq!(shop.stock().await, (10, 0, 0));
}
both_backends!(risk_n1_a_reconciliation_difference_is_dismissed_once_put_right);
