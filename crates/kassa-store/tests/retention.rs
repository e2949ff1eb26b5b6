//! Retention on both backends, against the emulator (risk D2, issue 24): the janitor prunes, in
//! bounded batches and each after its own retention, checkout idempotency keys that hold no
//! checkout in progress, webhook events the inbox finished with, and notifications delivered or
//! dead; it keeps young rows, unfinished ones, and every row that records money or who did what.
//! A retry with a pruned key finds its cart checked out and is told which order it became.

use std::collections::BTreeMap;

use kassa_app::AppError;
use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_app::checkout::CheckoutFlow;
use kassa_app::janitor::Pruned;
use kassa_app::notifications::Notifier;
use kassa_app::ports::{CaptureMethod, Clock, Notification};
use kassa_app::refunds::RefundInput;
use kassa_app::sellers::SellerInput;
use kassa_domain::retention::{DAY_SECS, Retention};
use kassa_testkit::shop::{EmulatedShop, UNIT, actor, checkout_input};
use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

/// Short retentions, each its own, so each is seen to apply alone.
const SHORT: Retention = Retention {
    idempotency_key_days: 2,
    webhook_event_days: 3,
    notification_days: 4,
};

/// Tables whose rows are never pruned: the money's record and the audit trail.
const KEPT: [&str; 13] = [
    "orders",
    "order_lines",
    "reservations",
    "payments",
    "refunds",
    "disputes",
    "credit_entries",
    "customers",
    "subscriptions",
    "seller_transfers",
    "transfer_reversals",
    "sellers",
    "audit_log",
];

async fn shop(db: TestDb) -> EmulatedShop {
    EmulatedShop::with_settings(db, CaptureMethod::Automatic, |settings| {
        settings.retention = SHORT;
    })
    .await
}

async fn count(shop: &EmulatedShop, sql: &str) -> i64 {
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    // The statements are the test's own text.
    let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .expect("query");
    pool.close().await;
    value
}

async fn execute(shop: &EmulatedShop, sql: &str, now: i64) {
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(now)
        .execute(&pool)
        .await
        .expect("statement");
    pool.close().await;
}

/// Row counts of every table that is never pruned.
async fn kept_rows(shop: &EmulatedShop) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in KEPT {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        counts.push((table, count(shop, &sql).await));
    }
    counts
}

/// Delivers every due notification, refusing the `order.refunded` ones (they stay failed).
struct Receiver;

#[async_trait::async_trait]
impl Notifier for Receiver {
    async fn deliver(&self, _url: &str, notification: &Notification) -> Result<(), String> {
        match notification.topic.as_str() {
            "order.refunded" => Err("503 from the merchant".into()),
            _ => Ok(()),
        }
    }
}

/// A seller selling BOOK whose account Stripe enabled (and Kassa heard so).
async fn seller_selling_books(shop: &EmulatedShop) {
    let seller = shop
        .app
        .create_seller(SellerInput {
            name: "Bookshop Berlin".into(),
            email: "books@example.com".into(),
            country: "DE".into(),
            key_scope: "secret".into(),
            idempotency_key: Some("seller-books".into()),
            actor: actor(),
        })
        .await
        .expect("seller");
    let account = seller.account_id.as_deref().expect("account");
    shop.control(
        &format!("/_emulator/accounts/{account}"),
        json!({"charges_enabled": true, "payouts_enabled": true}),
    )
    .await;
    shop.deliver_events().await;
    shop.app
        .create_product(NewProduct {
            name: "Book".into(),
            variants: vec![NewVariant {
                sku: "BOOK".into(),
                unit_amount_minor: UNIT,
                currency: "eur".into(),
                attributes: BTreeMap::new(),
                credits: 0,
            }],
            seller_id: Some(seller.id.clone()),
        })
        .await
        .expect("product");
    shop.app.set_on_hand("BOOK", None, 5).await.expect("stock");
    shop.app
        .create_product(NewProduct {
            name: "100 credits".into(),
            variants: vec![NewVariant {
                sku: "PACK".into(),
                unit_amount_minor: UNIT,
                currency: "eur".into(),
                attributes: BTreeMap::new(),
                credits: 100,
            }],
            seller_id: None,
        })
        .await
        .expect("pack");
    shop.app.set_on_hand("PACK", None, 5).await.expect("stock");
}

/// A checkout of `lines` under `key`: (status, body, replayed).
async fn checkout(shop: &EmulatedShop, cart_id: &str, units: i64, key: &str) -> (u16, Value, bool) {
    let input = checkout_input(cart_id, units * UNIT, key, CheckoutFlow::Embedded);
    let reply = shop.app.checkout(input).await.expect("answered");
    let body = serde_json::from_str(&reply.response.body).expect("json");
    (reply.response.status, body, reply.replayed)
}

async fn cart(shop: &EmulatedShop, lines: &[(&str, i64)]) -> String {
    let cart = shop.app.create_cart("eur").await.expect("cart");
    for (sku, quantity) in lines {
        shop.app
            .add_cart_line(&cart.id, sku, *quantity)
            .await
            .expect("line");
    }
    cart.id
}

/// Everything a shop accumulates in a day: a paid order of a seller's book, the shop's mug and
/// a credit pack (its seller's transfer made, then all of it refunded and reversed), a checkout refused for
/// stock, one whose PaymentIntent's creation had no answer (its key at `order_created`, the
/// completer's work), notifications delivered, dead and failing, and inbox events processed,
/// failed, dead and just received.
async fn a_days_business(shop: &EmulatedShop, tag: &str) {
    let paid_cart = cart(shop, &[("BOOK", 1), ("MUG", 1), ("PACK", 1)]).await;
    let (status, placed, _) = checkout(shop, &paid_cart, 3, &format!("paid-{tag}")).await;
    assert_eq!(status, 201, "{placed}");
    let intent = placed["payment"]["payment_intent_id"].as_str().expect("pi");
    let order_id = placed["order"]["id"].as_str().expect("order").to_owned();
    shop.stripe(
        reqwest::Method::POST,
        &format!("/v1/payment_intents/{intent}/confirm"),
        &[("payment_method", "pm_card_visa")],
    )
    .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&order_id).await, "paid");
    shop.app.pay_sellers(10).await.expect("payouts");
    shop.app
        .create_refund(RefundInput {
            order_id: order_id.clone(),
            key_scope: "secret".into(),
            idempotency_key: Some(format!("refund-{tag}")),
            amount_minor: None,
            reason: None,
            restock: false,
            actor: actor(),
        })
        .await
        .expect("refund");
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("reversals");
    let short_cart = cart(shop, &[("TEE", 1_000)]).await;
    let (status, _, _) = checkout(shop, &short_cart, 1_000, &format!("short-{tag}")).await;
    assert_eq!(status, 409, "refused for stock");
    shop.fault(
        "POST /v1/payment_intents",
        json!([{"status": 500}, {"status": 500}]),
    )
    .await;
    let lost_cart = cart(shop, &[("MUG", 1)]).await;
    let lost = shop
        .app
        .checkout(checkout_input(
            &lost_cart,
            UNIT,
            &format!("lost-{tag}"),
            CheckoutFlow::Embedded,
        ))
        .await;
    assert!(
        matches!(lost, Err(AppError::ProviderUnavailable { .. })),
        "{lost:?}"
    );
    shop.clear_faults().await;
    let urls = ["http://merchant.test/hook".to_owned()];
    shop.app
        .deliver_notifications(&Receiver, &urls, 100)
        .await
        .expect("delivered");
    let now = shop.clock.now_secs();
    execute(
        shop,
        "UPDATE outbox SET status = 'dead' WHERE topic = 'refund.succeeded' AND created_at = $1",
        now,
    )
    .await;
    for status in ["failed", "dead", "received"] {
        let sql = format!(
            "INSERT INTO webhook_events (id, event_type, payload, status, attempts, next_attempt_at, received_at)
             VALUES ('evt_{status}_{tag}', 'payment_intent.succeeded', '{{}}', '{status}', 1, $1 + 86400000, $1)"
        );
        execute(shop, &sql, now).await;
    }
}

/// The rows of each prunable kind: (finished keys, keys at order_created, events by status,
/// notifications by status), as "kind:status" → count.
async fn prunable_rows(shop: &EmulatedShop) -> BTreeMap<String, i64> {
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    let mut rows = BTreeMap::new();
    for (kind, sql) in [
        (
            "key",
            "SELECT recovery_point, COUNT(*) FROM idempotency_keys GROUP BY recovery_point",
        ),
        (
            "event",
            "SELECT status, COUNT(*) FROM webhook_events GROUP BY status",
        ),
        (
            "notification",
            "SELECT status, COUNT(*) FROM outbox GROUP BY status",
        ),
    ] {
        let found: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(&pool).await.expect("read");
        rows.extend(
            found
                .into_iter()
                .map(|(status, n)| (format!("{kind}:{status}"), n)),
        );
    }
    pool.close().await;
    rows
}

/// Risk D2: a day's old business, then a young day's. Each kind of row goes when its own
/// retention has passed — keys after 2 days, events after 3, notifications after 4 — and only
/// the old ones; keys at `order_created`, events received, failed or dead, and notifications
/// pending or failed stay whatever their age; and no row of an order, payment, refund, ledger
/// entry, transfer or the audit trail is ever pruned.
async fn risk_d2_each_kind_is_pruned_after_its_own_retention_and_the_money_never(db: TestDb) {
    let shop = shop(db).await;
    seller_selling_books(&shop).await;
    let t0 = shop.clock.now_secs();
    a_days_business(&shop, "old").await;
    let old = prunable_rows(&shop).await;
    let old_money = kept_rows(&shop).await;
    for table in [
        "orders",
        "payments",
        "refunds",
        "credit_entries",
        "seller_transfers",
        "transfer_reversals",
        "audit_log",
    ] {
        let rows = old_money.iter().find(|(t, _)| *t == table).map(|(_, n)| *n);
        assert!(rows.unwrap_or(0) > 0, "{table}: {old_money:?}");
    }
    for kind in [
        "key:finished",
        "key:order_created",
        "event:processed",
        "event:failed",
        "event:dead",
        "event:received",
        "notification:delivered",
        "notification:dead",
        "notification:failed",
    ] {
        assert!(old.get(kind).copied().unwrap_or(0) > 0, "{kind}: {old:?}");
    }

    // A day later, a young day's business; nothing is old enough yet.
    shop.clock.advance(DAY_SECS);
    a_days_business(&shop, "young").await;
    let both = prunable_rows(&shop).await;
    let money = kept_rows(&shop).await;
    assert_eq!(
        shop.app.run_janitor().await.expect("round").pruned,
        Pruned::default()
    );
    // Day by day: each kind goes when its retention has passed since that day, and only then.
    let retention_days = |kind: &str| match kind {
        "key:finished" | "key:started" => Some(SHORT.idempotency_key_days),
        "event:processed" | "event:ignored" => Some(SHORT.webhook_event_days),
        "notification:delivered" | "notification:dead" => Some(SHORT.notification_days),
        _ => None,
    };
    for days_after_the_old in 2..=5_i64 {
        shop.clock
            .advance(t0 + days_after_the_old * DAY_SECS + 1 - shop.clock.now_secs());
        let report = shop.app.run_janitor().await.expect("round");
        assert!(
            report.pruned.total() > 0,
            "day {days_after_the_old}: {report:?}"
        );
        let left = prunable_rows(&shop).await;
        for (kind, count) in &both {
            let old_share = old.get(kind).copied().unwrap_or(0);
            let expected = match retention_days(kind).map(i64::from) {
                None => *count,
                // The young day's too: a day later than the old one.
                Some(days) if days_after_the_old > days => 0,
                Some(days) if days_after_the_old >= days => count - old_share,
                Some(_) => *count,
            };
            assert_eq!(
                left.get(kind).copied().unwrap_or(0),
                expected,
                "{kind} on day {days_after_the_old}: {left:?}"
            );
        }
        assert_eq!(kept_rows(&shop).await, money, "never pruned");
    }
    // What stays whatever its age: the completer's keys and the unfinished events and
    // notifications of both days.
    let left = prunable_rows(&shop).await;
    for (kind, count) in &left {
        assert_eq!(retention_days(kind), None, "{kind} left: {left:?}");
        assert_eq!(Some(count), both.get(kind), "{kind}: both days' kept");
    }
    assert_eq!(
        shop.app.run_janitor().await.expect("round").pruned,
        Pruned::default()
    );
    // The checkouts whose outcome never came are flagged for a person, as the completer does;
    // with that, everything pruning left agrees with itself and with the provider.
    shop.app
        .complete_stalled_checkouts(10)
        .await
        .expect("completer");
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
}
both_backends!(risk_d2_each_kind_is_pruned_after_its_own_retention_and_the_money_never);

/// Risk D2: a backlog goes in bounded batches, oldest first, each kind on its own; young and
/// unfinished rows are never taken to fill a batch.
async fn risk_d2_a_backlog_is_pruned_in_bounded_batches_oldest_first(db: TestDb) {
    let shop = shop(db).await;
    let now = shop.clock.now_secs();
    let long_ago = now - 10 * DAY_SECS;
    for n in 0..5 {
        let at = long_ago + n;
        for sql in [
            format!(
                "INSERT INTO idempotency_keys (scope, idempotency_key, request_method, request_path, request_hash,
                     recovery_point, created_at, updated_at)
                 VALUES ('publishable', 'k{n}', 'POST', '/v1/carts/c/checkout', 'h', 'finished', $1, $1)"
            ),
            format!(
                "INSERT INTO webhook_events (id, event_type, payload, status, attempts, next_attempt_at, received_at, processed_at)
                 VALUES ('evt_{n}', 'payment_intent.succeeded', '{{}}', 'processed', 1, $1, $1, $1)"
            ),
            format!(
                "INSERT INTO outbox (id, topic, business_key, payload, status, attempts, next_attempt_at, created_at, delivered_at)
                 VALUES ('obx_{n}', 'order.paid', 'order.paid:ord_{n}', '{{}}', 'delivered', 1, $1, $1, $1)"
            ),
        ] {
            execute(&shop, &sql, at).await;
        }
    }
    for sql in [
        "INSERT INTO idempotency_keys (scope, idempotency_key, request_method, request_path, request_hash,
             recovery_point, order_id, created_at, updated_at)
         VALUES ('publishable', 'k_stalled', 'POST', '/v1/carts/c/checkout', 'h', 'order_created', 'ord_x', $1 - 1, $1 - 1)",
        "INSERT INTO idempotency_keys (scope, idempotency_key, request_method, request_path, request_hash,
             recovery_point, locked_until, created_at, updated_at)
         VALUES ('publishable', 'k_locked', 'POST', '/v1/carts/c/checkout', 'h', 'started', $1 + 999999999, $1 - 1, $1 - 1)",
        "INSERT INTO webhook_events (id, event_type, payload, status, attempts, next_attempt_at, received_at)
         VALUES ('evt_dead', 'payment_intent.succeeded', '{}', 'dead', 10, $1, $1 - 1)",
        "INSERT INTO outbox (id, topic, business_key, payload, status, attempts, next_attempt_at, created_at)
         VALUES ('obx_pending', 'order.paid', 'order.paid:ord_p', '{}', 'pending', 0, $1, $1 - 1)",
    ] {
        execute(&shop, sql, long_ago).await;
    }
    let mut rounds = Vec::new();
    loop {
        let pruned = shop.app.prune(2).await.expect("pruned");
        rounds.push(pruned);
        if pruned == Pruned::default() {
            break;
        }
        if rounds.len() == 1 {
            // The two oldest of each went first.
            for (sql, expected) in [
                (
                    "SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key IN ('k0', 'k1')",
                    0,
                ),
                (
                    "SELECT COUNT(*) FROM webhook_events WHERE id IN ('evt_0', 'evt_1', 'evt_2')",
                    1,
                ),
                (
                    "SELECT COUNT(*) FROM outbox WHERE id IN ('obx_0', 'obx_1')",
                    0,
                ),
            ] {
                assert_eq!(count(&shop, sql).await, expected, "{sql}");
            }
        }
    }
    let each = |n| Pruned {
        idempotency_keys: n,
        webhook_events: n,
        notifications: n,
    };
    assert_eq!(rounds, [each(2), each(2), each(1), each(0)]);
    let left = prunable_rows(&shop).await;
    assert_eq!(
        left,
        BTreeMap::from([
            ("event:dead".to_owned(), 1),
            ("key:order_created".to_owned(), 1),
            ("key:started".to_owned(), 1),
            ("notification:pending".to_owned(), 1),
        ])
    );
}
both_backends!(risk_d2_a_backlog_is_pruned_in_bounded_batches_oldest_first);

/// Risk D2: a retry with a key Kassa still holds replays the answer; once the key is pruned,
/// the same retry starts a new checkout of the same cart, which one order per cart refuses:
/// 409 `cart_already_checked_out` naming the order it became. Nothing is reserved, created at
/// the provider or ordered twice, and the refusal is what the key answers from then on.
async fn risk_d2_a_retry_with_a_pruned_key_is_told_its_cart_became_an_order(db: TestDb) {
    let shop = shop(db).await;
    let cart_id = cart(&shop, &[("MUG", 2)]).await;
    let (status, placed, replayed) = checkout(&shop, &cart_id, 2, "retry-me").await;
    assert_eq!((status, replayed), (201, false), "{placed}");
    let order_id = placed["order"]["id"].as_str().expect("order").to_owned();
    let (status, again, replayed) = checkout(&shop, &cart_id, 2, "retry-me").await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again, placed, "the stored answer");

    shop.clock.advance(2 * DAY_SECS + 1);
    let pruned = shop.app.prune(100).await.expect("pruned");
    assert_eq!(pruned.idempotency_keys, 1);
    let stock = shop.stock("MUG").await;
    let intents = shop
        .stripe(reqwest::Method::GET, "/v1/payment_intents?limit=100", &[])
        .await["data"]
        .as_array()
        .map(Vec::len);
    let (status, refused, replayed) = checkout(&shop, &cart_id, 2, "retry-me").await;
    assert_eq!((status, replayed), (409, false), "{refused}");
    assert_eq!(refused["error"]["code"], "cart_already_checked_out");
    assert_eq!(refused["error"]["order_id"], order_id.as_str());
    let (status, _, replayed) = checkout(&shop, &cart_id, 2, "retry-me").await;
    assert_eq!(
        (status, replayed),
        (409, true),
        "the key answers the refusal now"
    );
    assert_eq!(count(&shop, "SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(shop.stock("MUG").await, stock);
    let after = shop
        .stripe(reqwest::Method::GET, "/v1/payment_intents?limit=100", &[])
        .await["data"]
        .as_array()
        .map(Vec::len);
    assert_eq!(after, intents, "no call created anything at the provider");
    // The order itself is as it was: the key only ever pointed at it.
    assert_eq!(shop.status(&order_id).await, "pending_payment");
}
both_backends!(risk_d2_a_retry_with_a_pruned_key_is_told_its_cart_became_an_order);
