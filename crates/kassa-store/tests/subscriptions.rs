//! Subscriptions on both backends, against the emulator (seed 003, risks W1, W2, W3): a
//! subscription is paid on its hosted page; its events arrive in any order, duplicated and at
//! the same time; each paid invoice grants its period's credits exactly once, in the same
//! transaction as the subscription's move and the event's processed mark.

use std::sync::Arc;

use kassa_app::ports::{CaptureMethod, Clock, CreditEntry, CreditStore, SubscriptionRecord};
use kassa_app::subscriptions::{NewPlan, SubscribeInput, SubscriptionPage};
use kassa_domain::credits::SubscriptionStatus;
use kassa_testkit::shop::EmulatedShop;
use kassa_testkit::{TestDb, both_backends};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

const CREDITS: i64 = 500;
const FAULT_BEFORE_INVOICE_GRANT: &str = "webhook.before_invoice_grant";
const MONTH_SECS: i64 = 30 * 86_400;

/// The shop with a monthly plan of 500 credits; Ada subscribes, and pays the page with a card
/// (its events not yet delivered).
async fn subscribed(db: TestDb) -> (Arc<EmulatedShop>, SubscriptionPage) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let plan = shop
        .app
        .create_plan(NewPlan {
            name: "Pro".into(),
            unit_amount_minor: 900,
            currency: "eur".into(),
            interval: "month".into(),
            credits: CREDITS,
        })
        .await
        .expect("plan");
    let page = shop
        .app
        .subscribe(SubscribeInput {
            plan_id: plan.id,
            email: "ada@example.com".into(),
            key_scope: "publishable".into(),
            idempotency_key: Some("subscribe-1".into()),
            actor: kassa_testkit::shop::actor(),
        })
        .await
        .expect("subscribed");
    let session = shop.pay_session(&page.session_id, "pm_card_visa").await;
    assert_eq!(session["status"], "complete", "{session}");
    (Arc::new(shop), page)
}

async fn ledger(shop: &EmulatedShop, customer_id: &str) -> (i64, Vec<CreditEntry>) {
    let customer = shop
        .db
        .store
        .customer(customer_id)
        .await
        .expect("read")
        .expect("customer");
    let entries = shop
        .db
        .store
        .credit_entries(customer_id, 1_000)
        .await
        .expect("entries");
    (customer.balance, entries)
}

async fn subscription(shop: &EmulatedShop, page: &SubscriptionPage) -> SubscriptionRecord {
    shop.app
        .subscription(&page.subscription_id)
        .await
        .expect("subscription")
}

fn of_types(events: &[Value], types: &[&str]) -> Vec<Value> {
    events
        .iter()
        .filter(|event| types.iter().any(|t| event["type"] == *t))
        .cloned()
        .collect()
}

/// Delivers every event of `events` in a task of its own, all at once.
async fn deliver_concurrently(shop: &Arc<EmulatedShop>, events: Vec<Value>) {
    let mut tasks = tokio::task::JoinSet::new();
    for event in events {
        let shop = shop.clone();
        tasks.spawn(async move { shop.deliver(&event).await.is_ok() });
    }
    while let Some(recorded) = tasks.join_next().await {
        assert!(recorded.expect("task"), "every delivery is recorded");
    }
}

/// Seed 003's first test: `checkout.session.completed` and `customer.subscription.created`
/// processed at the same time grant nothing (only a paid invoice does); with the invoice's
/// events the credits come once.
async fn risk_w1_completed_and_created_processed_concurrently_grant_once(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    let events = shop.events().await;
    let both = of_types(
        &events,
        &[
            "checkout.session.completed",
            "customer.subscription.created",
        ],
    );
    assert_eq!(both.len(), 2, "{events:?}");
    deliver_concurrently(&shop, [both.clone(), both].concat()).await;
    let linked = subscription(&shop, &page).await;
    assert!(linked.provider_subscription_id.is_some(), "{linked:?}");
    assert_eq!(linked.status, SubscriptionStatus::Incomplete);
    assert_eq!(ledger(&shop, &page.customer_id).await.0, 0);
    // Every event, each twice, all at once.
    deliver_concurrently(&shop, [events.clone(), events].concat()).await;
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!(balance, CREDITS);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0].business_key.starts_with("invoice:in_"),
        "{entries:?}"
    );
    assert_eq!(
        subscription(&shop, &page).await.status,
        SubscriptionStatus::Active
    );
}
both_backends!(risk_w1_completed_and_created_processed_concurrently_grant_once);

/// The paid invoice reported by two different events at the same time (the inbox, keyed by
/// event id, cannot tell them apart): the ledger's unique business key, checked and written in
/// the transaction that applies each, grants once.
async fn risk_w2_one_invoice_paid_in_two_events_at_once_grants_once(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    let events = shop.events().await;
    let paid = of_types(&events, &["invoice.paid"]);
    assert_eq!(paid.len(), 1);
    let copies: Vec<Value> = (0..8)
        .map(|n| {
            let mut copy = paid[0].clone();
            copy["id"] = json!(format!("evt_copy_{n}"));
            copy
        })
        .collect();
    deliver_concurrently(&shop, copies).await;
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!((balance, entries.len()), (CREDITS, 1), "{entries:?}");
}
both_backends!(risk_w2_one_invoice_paid_in_two_events_at_once_grants_once);

/// Seed 003's second test: a failure between the subscription's update and the grant leaves
/// neither; the event is failed (so it is retried), and the retry applies both once.
async fn risk_w3_a_failure_between_the_subscription_update_and_the_grant_leaves_neither(
    db: TestDb,
) {
    let (shop, page) = subscribed(db).await;
    shop.db.store.faults().arm(FAULT_BEFORE_INVOICE_GRANT);
    shop.deliver_events().await;
    assert_eq!(
        subscription(&shop, &page).await.status,
        SubscriptionStatus::Incomplete
    );
    assert_eq!(ledger(&shop, &page.customer_id).await.0, 0);
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM webhook_events WHERE status = 'failed'")
            .await,
        1
    );
    shop.clock.advance(3_600);
    assert_eq!(shop.app.process_inbox(10).await.expect("retry"), 1);
    assert_eq!(
        subscription(&shop, &page).await.status,
        SubscriptionStatus::Active
    );
    shop.deliver_events().await;
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!((balance, entries.len()), (CREDITS, 1));
}
both_backends!(risk_w3_a_failure_between_the_subscription_update_and_the_grant_leaves_neither);

/// Twelve renewals, every event delivered twice, shuffled, four at a time: one grant per paid
/// invoice — the first and the twelve renewals — and the subscription active.
async fn twelve_renewals_with_every_event_duplicated_and_shuffled_grant_once_each(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    for _ in 0..12 {
        shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
            .await;
    }
    let events = shop.events().await;
    let renewals = of_types(&events, &["invoice.paid"])
        .iter()
        .filter(|event| event["data"]["object"]["billing_reason"] == "subscription_cycle")
        .count();
    assert_eq!(renewals, 12);
    let mut deliveries = [events.clone(), events].concat();
    deliveries.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
    for batch in deliveries.chunks(4) {
        deliver_concurrently(&shop, batch.to_vec()).await;
    }
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!(entries.len(), 13, "{entries:?}");
    assert_eq!(balance, 13 * CREDITS);
    let subscription = subscription(&shop, &page).await;
    assert_eq!(subscription.status, SubscriptionStatus::Active);
    let last_period_end = of_types(&shop.events().await, &["invoice.paid"])
        .iter()
        .filter_map(|event| event["data"]["object"]["period_end"].as_i64())
        .max();
    assert_eq!(subscription.current_period_end, last_period_end);
}
both_backends!(twelve_renewals_with_every_event_duplicated_and_shuffled_grant_once_each);

/// A renewal the card refuses: `past_due` and no grant; paid later: active and one grant. The
/// failure delivered again after the payment changes nothing.
async fn a_failed_renewal_is_past_due_without_credits_until_it_is_paid(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    shop.deliver_events().await;
    let customer = shop
        .db
        .store
        .customer(&page.customer_id)
        .await
        .expect("read")
        .expect("customer");
    let provider_customer = customer.provider_customer_id.expect("linked");
    shop.control(
        &format!("/_emulator/customers/{provider_customer}/payment_method"),
        json!({"payment_method": "pm_card_chargeDeclined"}),
    )
    .await;
    shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
        .await;
    shop.deliver_events().await;
    assert_eq!(
        subscription(&shop, &page).await.status,
        SubscriptionStatus::PastDue
    );
    assert_eq!(ledger(&shop, &page.customer_id).await.0, CREDITS);
    // The customer fixes their card; the invoice is paid.
    shop.control(
        &format!("/_emulator/customers/{provider_customer}/payment_method"),
        json!({"payment_method": "pm_card_visa"}),
    )
    .await;
    let failed = of_types(&shop.events().await, &["invoice.payment_failed"]);
    let invoice = failed[0]["data"]["object"]["id"].as_str().expect("id");
    let paid = shop
        .stripe(
            reqwest::Method::POST,
            &format!("/v1/invoices/{invoice}/pay"),
            &[],
        )
        .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    let paid_event = of_types(&shop.events().await, &["invoice.paid"])
        .pop()
        .expect("paid");
    shop.deliver(&paid_event).await.expect("recorded");
    // The failure again, as a late duplicate under another id: stale, it changes nothing.
    let mut late = failed[0].clone();
    late["id"] = json!("evt_late_failure");
    shop.deliver(&late).await.expect("recorded");
    shop.deliver_events().await;
    assert_eq!(
        subscription(&shop, &page).await.status,
        SubscriptionStatus::Active
    );
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!((balance, entries.len()), (2 * CREDITS, 2));
}
both_backends!(a_failed_renewal_is_past_due_without_credits_until_it_is_paid);

/// Cancel at the period's end keeps the period paid for, then ends with it; cancel now ends
/// at once. Subscribing again with the same key answers with the same page.
async fn cancel_at_period_end_then_the_period_ends(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    shop.deliver_events().await;
    let actor = kassa_testkit::shop::actor();
    let canceling = shop
        .app
        .cancel_subscription(&page.subscription_id, true, &actor)
        .await
        .expect("cancel at period end");
    assert!(canceling.cancel_at_period_end);
    assert_eq!(canceling.status, SubscriptionStatus::Active);
    shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
        .await;
    shop.deliver_events().await;
    let ended = subscription(&shop, &page).await;
    assert_eq!(ended.status, SubscriptionStatus::Canceled);
    assert_eq!(
        ledger(&shop, &page.customer_id).await.0,
        CREDITS,
        "no renewal"
    );
}
both_backends!(cancel_at_period_end_then_the_period_ends);

async fn cancel_now_and_replayed_subscribe(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    shop.deliver_events().await;
    let plan_id = subscription(&shop, &page).await.plan_id;
    let again = shop
        .app
        .subscribe(SubscribeInput {
            plan_id: plan_id.clone(),
            email: "ada@example.com".into(),
            key_scope: "publishable".into(),
            idempotency_key: Some("subscribe-1".into()),
            actor: kassa_testkit::shop::actor(),
        })
        .await
        .expect("replayed");
    assert_eq!(again, page);
    let reused = shop
        .app
        .subscribe(SubscribeInput {
            plan_id,
            email: "grace@example.com".into(),
            key_scope: "publishable".into(),
            idempotency_key: Some("subscribe-1".into()),
            actor: kassa_testkit::shop::actor(),
        })
        .await;
    assert_eq!(reused, Err(kassa_app::AppError::IdempotencyKeyReused));
    let actor = kassa_testkit::shop::actor();
    let ended = shop
        .app
        .cancel_subscription(&page.subscription_id, false, &actor)
        .await
        .expect("cancel now");
    assert_eq!(ended.status, SubscriptionStatus::Canceled);
    shop.deliver_events().await;
    assert_eq!(
        subscription(&shop, &page).await.status,
        SubscriptionStatus::Canceled
    );
}
both_backends!(cancel_now_and_replayed_subscribe);

/// Invariant 8: the ledger agrees with the provider's paid invoices after renewals; a grant
/// missing, a grant for an invoice never paid, and a balance driven below zero are each
/// reported with their ids.
async fn the_ledger_is_checked_against_the_providers_paid_invoices(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    for _ in 0..2 {
        shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
            .await;
    }
    shop.deliver_events().await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
    assert_eq!(report.provider_errors, 0);

    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    let (_, entries) = ledger(&shop, &page.customer_id).await;
    sqlx::query("DELETE FROM credit_entries WHERE id = $1")
        .bind(&entries[0].id)
        .execute(&pool)
        .await
        .expect("tamper");
    let subscription_id = Some(page.subscription_id.as_str());
    for (id, amount, kind, key, sequence, subscription) in [
        (
            "cre_forged",
            500,
            "grant",
            "invoice:in_never_paid",
            1_000,
            subscription_id,
        ),
        (
            "cre_overdrawn",
            -2_000,
            "debit",
            "debit:forged",
            1_001,
            None,
        ),
    ] {
        sqlx::query(
            "INSERT INTO credit_entries (id, customer_id, amount, kind, business_key, created_at, sequence,
                 subscription_id)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
        )
        .bind(id)
        .bind(&page.customer_id)
        .bind(amount)
        .bind(kind)
        .bind(key)
        .bind(sequence)
        .bind(subscription)
        .execute(&pool)
        .await
        .expect("tamper");
    }
    pool.close().await;
    let report = shop.app.check_invariants().await.expect("checked");
    let found = |id: &str, what: &str| {
        report
            .violations
            .iter()
            .any(|v| v.invariant == 8 && v.ids.iter().any(|i| i == id) && v.what.contains(what))
    };
    assert!(
        found(&page.subscription_id, "has no grant"),
        "{:#?}",
        report.violations
    );
    assert!(
        found(
            &page.subscription_id,
            "invoice:in_never_paid, which the provider does not hold"
        ),
        "{:#?}",
        report.violations
    );
    assert!(
        found("cre_overdrawn", "below zero"),
        "{:#?}",
        report.violations
    );
}
both_backends!(the_ledger_is_checked_against_the_providers_paid_invoices);

/// Stripe made the page but its answer was lost (and the adapter's own retry met a 500):
/// the client's retry with the same key, seconds later, gets that page — the provider call is
/// repeated with exactly what was sent first, so Stripe's key replays it (risk P1's shape).
async fn a_subscribe_retried_after_a_lost_answer_gets_the_same_page(db: TestDb) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let plan = shop
        .app
        .create_plan(NewPlan {
            name: "Pro".into(),
            unit_amount_minor: 900,
            currency: "eur".into(),
            interval: "month".into(),
            credits: CREDITS,
        })
        .await
        .expect("plan");
    let input = || SubscribeInput {
        plan_id: plan.id.clone(),
        email: "ada@example.com".into(),
        key_scope: "publishable".into(),
        idempotency_key: Some("subscribe-lost".into()),
        actor: kassa_testkit::shop::actor(),
    };
    shop.fault(
        "POST /v1/checkout/sessions",
        json!(["lose_response", {"status": 500}]),
    )
    .await;
    let lost = shop.app.subscribe(input()).await;
    assert!(
        matches!(lost, Err(kassa_app::AppError::ProviderUnavailable { .. })),
        "{lost:?}"
    );
    shop.clock.advance(7);
    let page = shop.app.subscribe(input()).await.expect("the retry");
    let sessions = shop
        .stripe(reqwest::Method::GET, "/v1/checkout/sessions?limit=100", &[])
        .await;
    assert_eq!(
        sessions["data"].as_array().map(Vec::len),
        Some(1),
        "{sessions}"
    );
    assert_eq!(sessions["data"][0]["id"], page.session_id.as_str());
}
both_backends!(a_subscribe_retried_after_a_lost_answer_gets_the_same_page);

/// An invoice that bills no period (a proration after a change at Stripe, a manual invoice)
/// buys no credits: recorded and ignored (risk W6); the subscription's own invoices grant.
async fn risk_w6_an_invoice_that_bills_no_period_grants_nothing(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    shop.deliver_events().await;
    let paid = of_types(&shop.events().await, &["invoice.paid"]);
    for (n, reason) in ["subscription_update", "manual"].into_iter().enumerate() {
        let mut other = paid[0].clone();
        other["id"] = json!(format!("evt_other_{n}"));
        other["data"]["object"]["id"] = json!(format!("in_other_{n}"));
        other["data"]["object"]["billing_reason"] = json!(reason);
        shop.deliver(&other).await.expect("recorded");
    }
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!((balance, entries.len()), (CREDITS, 1), "{entries:?}");
    assert_eq!(
        shop.scalar(
            "SELECT COUNT(*) FROM webhook_events WHERE id LIKE 'evt_other_%' AND status = 'ignored'"
        )
        .await,
        2
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM subscriptions WHERE needs_attention IS NOT NULL")
            .await,
        0
    );
}
both_backends!(risk_w6_an_invoice_that_bills_no_period_grants_nothing);

/// Ada's customer at the emulator.
async fn provider_customer(shop: &EmulatedShop, page: &SubscriptionPage) -> String {
    shop.db
        .store
        .customer(&page.customer_id)
        .await
        .expect("read")
        .expect("customer")
        .provider_customer_id
        .expect("linked")
}

/// What the customer paid for each invoice's grant: (business key, paid amount, currency), in
/// the order granted.
async fn paid_beside_grants(shop: &EmulatedShop) -> Vec<(String, Option<i64>, Option<String>)> {
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    let rows = sqlx::query_as(
        "SELECT business_key, paid_amount, paid_currency FROM credit_entries
         WHERE kind = 'grant' ORDER BY sequence",
    )
    .fetch_all(&pool)
    .await
    .expect("read");
    pool.close().await;
    rows
}

/// Risk W6 (issue 24): a renewal the customer's balance paid part of (600 of 900), one a
/// balance paid entirely (0), and one with tax added (1089) each grant the period's credits
/// once: the invoice is paid in full (`amount_remaining` 0) for the plan's price, and what was
/// paid is recorded beside the grant. The check finds nothing owing.
async fn risk_w6_a_period_paid_in_full_grants_whatever_a_balance_coupon_or_tax_made_of_the_amount(
    db: TestDb,
) {
    let (shop, page) = subscribed(db).await;
    shop.deliver_events().await;
    let customer = provider_customer(&shop, &page).await;
    for balance in [-300, -2_000] {
        shop.control(
            &format!("/_emulator/customers/{customer}/balance"),
            json!({ "balance": balance }),
        )
        .await;
        shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
            .await;
    }
    shop.deliver_events().await;
    let paid = of_types(&shop.events().await, &["invoice.paid"]);
    let amounts: Vec<Value> = paid
        .iter()
        .map(|event| event["data"]["object"]["amount_paid"].clone())
        .collect();
    assert_eq!(amounts, [json!(900), json!(600), json!(0)]);
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!((balance, entries.len()), (3 * CREDITS, 3), "{entries:?}");
    let recorded: Vec<Option<i64>> = paid_beside_grants(&shop)
        .await
        .into_iter()
        .map(|(_, amount, currency)| {
            assert_eq!(currency.as_deref(), Some("eur"));
            amount
        })
        .collect();
    assert_eq!(recorded, [Some(900), Some(600), Some(0)]);
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
    // Tax added at Stripe: more than the price was paid, for the same period of the plan.
    let mut taxed = paid[2].clone();
    taxed["id"] = json!("evt_taxed");
    taxed["data"]["object"]["id"] = json!("in_taxed");
    taxed["data"]["object"]["amount_paid"] = json!(1_089);
    shop.deliver(&taxed).await.expect("recorded");
    assert_eq!(ledger(&shop, &page.customer_id).await.0, 4 * CREDITS);
    assert_eq!(
        paid_beside_grants(&shop).await.pop(),
        Some((
            "invoice:in_taxed".to_owned(),
            Some(1_089),
            Some("eur".to_owned())
        ))
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM subscriptions WHERE needs_attention IS NOT NULL")
            .await,
        0
    );
}
both_backends!(
    risk_w6_a_period_paid_in_full_grants_whatever_a_balance_coupon_or_tax_made_of_the_amount
);

/// Risk W6 (issue 24): the plan's price changed at Stripe (a new price Kassa does not know), an
/// invoice in another currency, one without a readable subscription line, and one reported
/// paid with money still owed: none grants, none is skipped in silence — the subscription is
/// flagged with the reason and the invoice, each invoice is announced once
/// (`subscription.needs_attention`) and audited, the gauge counts the subscription, and the
/// check reports the paid period without its grant. The subscription is still as Stripe says.
async fn risk_w6_an_invoice_for_a_price_kassa_does_not_know_is_flagged_never_skipped(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    shop.deliver_events().await;
    let provider_id = subscription(&shop, &page)
        .await
        .provider_subscription_id
        .expect("linked");
    shop.control(
        &format!("/_emulator/subscriptions/{provider_id}/price"),
        json!({"unit_amount": 1_900}),
    )
    .await;
    shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
        .await;
    shop.deliver_events().await;
    let (balance, entries) = ledger(&shop, &page.customer_id).await;
    assert_eq!((balance, entries.len()), (CREDITS, 1), "{entries:?}");
    let flagged = subscription(&shop, &page).await;
    assert_eq!(flagged.status, SubscriptionStatus::Active);
    let renewal = of_types(&shop.events().await, &["invoice.paid"])
        .pop()
        .expect("renewal");
    let renewal_id = renewal["data"]["object"]["id"].as_str().expect("id");
    assert!(flagged.current_period_end >= renewal["data"]["object"]["period_end"].as_i64());
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    let reason: Option<String> =
        sqlx::query_scalar("SELECT needs_attention FROM subscriptions WHERE id = $1")
            .bind(&page.subscription_id)
            .fetch_one(&pool)
            .await
            .expect("read");
    let reason = reason.expect("flagged");
    assert!(reason.starts_with("unknown_price: invoice "), "{reason}");
    assert!(reason.contains(renewal_id), "{reason}");
    let report = shop.app.check_invariants().await.expect("checked");
    let reported = |what: &str| {
        report.violations.iter().any(|v| {
            v.invariant == 8 && v.ids.contains(&page.subscription_id) && v.what.contains(what)
        })
    };
    assert!(
        reported(&format!(
            "the paid period of invoice {renewal_id} has no grant (unknown_price; the subscription is flagged"
        )),
        "{:#?}",
        report.violations
    );
    // Forged reports of the same period, each under an invoice of its own.
    type Forge<'a> = &'a dyn Fn(&mut Value);
    let variants: [(&str, Forge); 3] = [
        ("usd", &|invoice| invoice["currency"] = json!("usd")),
        ("no_line", &|invoice| invoice["lines"]["data"] = json!([])),
        ("owing", &|invoice| invoice["amount_remaining"] = json!(300)),
    ];
    let first = of_types(&shop.events().await, &["invoice.paid"])[0].clone();
    for (name, change) in variants {
        let mut event = first.clone();
        event["id"] = json!(format!("evt_{name}"));
        event["data"]["object"]["id"] = json!(format!("in_{name}"));
        change(&mut event["data"]["object"]);
        shop.deliver(&event).await.expect("recorded");
    }
    assert_eq!(
        ledger(&shop, &page.customer_id).await.0,
        CREDITS,
        "nothing granted"
    );
    let notified: Vec<(String, String)> = sqlx::query_as(
        "SELECT business_key, payload FROM outbox WHERE topic = 'subscription.needs_attention'
         ORDER BY business_key",
    )
    .fetch_all(&pool)
    .await
    .expect("read");
    let keys: Vec<&str> = notified.iter().map(|(key, _)| key.as_str()).collect();
    let expected = format!("subscription.needs_attention:{renewal_id}");
    let mut want = vec![
        "subscription.needs_attention:in_no_line",
        "subscription.needs_attention:in_owing",
        "subscription.needs_attention:in_usd",
        expected.as_str(),
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    let owing: Value = notified
        .iter()
        .find(|(key, _)| key.ends_with("in_owing"))
        .map(|(_, payload)| serde_json::from_str(payload).expect("json"))
        .expect("owing");
    assert_eq!(owing["reason"], "not_paid_in_full");
    assert_eq!(owing["subscription_id"], page.subscription_id.as_str());
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE entity_id = $1 AND action = 'flagged'",
    )
    .bind(&page.subscription_id)
    .fetch_one(&pool)
    .await
    .expect("read");
    assert_eq!(audited, 4);
    // The renewal's event again after its inbox row and notification aged out (risk D2): the
    // audit trail knows it was flagged; nothing is announced twice.
    sqlx::query("DELETE FROM outbox WHERE business_key = $1")
        .bind(&expected)
        .execute(&pool)
        .await
        .expect("pruned");
    let mut redelivered = renewal.clone();
    redelivered["id"] = json!("evt_redelivered");
    shop.deliver(&redelivered).await.expect("recorded");
    let announced: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE topic = 'subscription.needs_attention'",
    )
    .fetch_one(&pool)
    .await
    .expect("read");
    assert_eq!(announced, 3, "not again");
    let audited_again: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE entity_id = $1 AND action = 'flagged'",
    )
    .bind(&page.subscription_id)
    .fetch_one(&pool)
    .await
    .expect("read");
    assert_eq!(audited_again, 4);
    pool.close().await;
    let gauges = kassa_app::ports::MetricsStore::gauges(&shop.db.store, shop.clock.now_secs())
        .await
        .expect("gauges");
    assert_eq!(gauges.subscriptions_needing_attention, 1);
}
both_backends!(risk_w6_an_invoice_for_a_price_kassa_does_not_know_is_flagged_never_skipped);

/// Risk W6 (issue 24): `kassa check` counts a period paid through a customer balance as owing
/// its grant (before, an amount other than the price owed nothing), and a paid period at an
/// unknown price without the flag that asks a person about it.
async fn risk_w6_the_check_reports_a_paid_period_without_its_grant(db: TestDb) {
    let (shop, page) = subscribed(db).await;
    shop.deliver_events().await;
    let customer = provider_customer(&shop, &page).await;
    shop.control(
        &format!("/_emulator/customers/{customer}/balance"),
        json!({"balance": -300}),
    )
    .await;
    shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
        .await;
    shop.deliver_events().await;
    let renewal = of_types(&shop.events().await, &["invoice.paid"])
        .pop()
        .expect("renewal");
    let renewal_id = renewal["data"]["object"]["id"].as_str().expect("id");
    assert_eq!(renewal["data"]["object"]["amount_paid"], 600);
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query("DELETE FROM credit_entries WHERE business_key = $1")
        .bind(format!("invoice:{renewal_id}"))
        .execute(&pool)
        .await
        .expect("tamper");
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(
        report.violations.iter().any(|v| v.invariant == 8
            && v.what == format!("the paid period of invoice {renewal_id} has no grant")),
        "{:#?}",
        report.violations
    );
    // The next period at a price Kassa does not know, its flag cleared behind Kassa's back.
    let provider_id = subscription(&shop, &page)
        .await
        .provider_subscription_id
        .expect("linked");
    shop.control(
        &format!("/_emulator/subscriptions/{provider_id}/price"),
        json!({"unit_amount": 1_900}),
    )
    .await;
    shop.control("/_emulator/clock/advance", json!({"seconds": MONTH_SECS}))
        .await;
    shop.deliver_events().await;
    sqlx::query("UPDATE subscriptions SET needs_attention = NULL")
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(
        report.violations.iter().any(|v| v
            .what
            .contains("(unknown_price; the subscription is NOT flagged)")),
        "{:#?}",
        report.violations
    );
}
both_backends!(risk_w6_the_check_reports_a_paid_period_without_its_grant);

/// A monthly plan of 500 credits.
async fn pro_plan(shop: &EmulatedShop) -> String {
    shop.app
        .create_plan(NewPlan {
            name: "Pro".into(),
            unit_amount_minor: 900,
            currency: "eur".into(),
            interval: "month".into(),
            credits: CREDITS,
        })
        .await
        .expect("plan")
        .id
}

/// The storefront's `POST /v1/subscriptions/checkout_session` for `email` under `key`.
async fn subscribe_as(
    shop: &EmulatedShop,
    plan_id: &str,
    email: &str,
    key: &str,
) -> Result<SubscriptionPage, kassa_app::AppError> {
    shop.app
        .subscribe(SubscribeInput {
            plan_id: plan_id.to_owned(),
            email: email.to_owned(),
            key_scope: "publishable".into(),
            idempotency_key: Some(key.to_owned()),
            actor: kassa_testkit::shop::actor(),
        })
        .await
}

/// The hosted pages the emulator has made.
async fn provider_sessions(shop: &EmulatedShop) -> Vec<Value> {
    let sessions = shop
        .stripe(reqwest::Method::GET, "/v1/checkout/sessions?limit=100", &[])
        .await;
    sessions["data"].as_array().cloned().unwrap_or_default()
}

/// Kassa's and the emulator's clocks both move past `page`'s expiry.
async fn past_the_page_expiry(shop: &EmulatedShop, page: &SubscriptionPage) {
    let seconds = page.expires_at - shop.clock.now_secs() + 60;
    shop.clock.advance(seconds);
    shop.control("/_emulator/clock/advance", json!({"seconds": seconds}))
        .await;
}

/// The refusal of a second subscription names the one the e-mail holds.
fn refused_naming(
    answer: Result<SubscriptionPage, kassa_app::AppError>,
    subscription_id: &str,
) -> bool {
    matches!(
        answer,
        Err(kassa_app::AppError::InvalidState { ref message }) if message.contains(subscription_id)
    )
}

/// Defect 4: the same e-mail subscribing to the same plan under a new key gets the page it
/// already has (one subscription, one page at Stripe); once that is paid, another key is
/// refused with 409 `invalid_state` naming it — never a second charge, never credits twice.
async fn risk_g5_a_second_key_for_a_held_plan_gets_the_open_page_then_a_refusal(db: TestDb) {
    let shop = Arc::new(EmulatedShop::new(db, CaptureMethod::Automatic).await);
    let plan = pro_plan(&shop).await;
    let first = subscribe_as(&shop, &plan, "ada@example.com", "k1")
        .await
        .expect("subscribed");
    let second = subscribe_as(&shop, &plan, "ada@example.com", "k2")
        .await
        .expect("the open page");
    assert_eq!(second, first);
    let session = shop.pay_session(&first.session_id, "pm_card_visa").await;
    assert_eq!(session["status"], "complete", "{session}");
    shop.deliver_events().await;
    assert_eq!(
        subscription(&shop, &first).await.status,
        SubscriptionStatus::Active
    );
    let third = subscribe_as(&shop, &plan, "ada@example.com", "k3").await;
    assert!(
        refused_naming(third.clone(), &first.subscription_id),
        "{third:?}"
    );
    // The second key again: the same refusal, nothing started under it.
    let again = subscribe_as(&shop, &plan, "ada@example.com", "k2").await;
    assert!(
        refused_naming(again.clone(), &first.subscription_id),
        "{again:?}"
    );
    // The first key again is its replay: the same page.
    assert_eq!(
        subscribe_as(&shop, &plan, "ada@example.com", "k1").await,
        Ok(first.clone())
    );
    shop.deliver_events().await;
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM subscriptions").await, 1);
    assert_eq!(provider_sessions(&shop).await.len(), 1);
    let (balance, entries) = ledger(&shop, &first.customer_id).await;
    assert_eq!((balance, entries.len()), (CREDITS, 1), "{entries:?}");
}
both_backends!(risk_g5_a_second_key_for_a_held_plan_gets_the_open_page_then_a_refusal);

/// Eight subscribes of one e-mail to one plan at once, each under its own key: one
/// subscription and one page at Stripe. Each answer is that subscription, or 503 (Stripe's
/// idempotency lock held by another of them), and the retry with the same key gets it.
async fn risk_g5_concurrent_subscribes_with_different_keys_make_one_subscription(db: TestDb) {
    let shop = Arc::new(EmulatedShop::new(db, CaptureMethod::Automatic).await);
    let plan = pro_plan(&shop).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (shop, plan) = (shop.clone(), plan.clone());
        tasks.spawn(async move {
            let key = format!("concurrent-{n}");
            let answer = subscribe_as(&shop, &plan, "ada@example.com", &key).await;
            (key, answer)
        });
    }
    let (mut pages, mut retries) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            (_, Ok(page)) => pages.push(page),
            (key, Err(kassa_app::AppError::ProviderUnavailable { .. })) => retries.push(key),
            (key, Err(error)) => panic!("{key}: {error:?}"),
        }
    }
    assert!(!pages.is_empty(), "{retries:?}");
    for key in retries {
        let page = subscribe_as(&shop, &plan, "ada@example.com", &key)
            .await
            .expect("the retry");
        pages.push(page);
    }
    assert_eq!(pages.len(), 8);
    assert!(pages.iter().all(|page| *page == pages[0]), "{pages:#?}");
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM subscriptions").await, 1);
    let sessions = provider_sessions(&shop).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["id"], pages[0].session_id.as_str());
}
both_backends!(risk_g5_concurrent_subscribes_with_different_keys_make_one_subscription);

/// The page was paid, and its time has run out before its events arrived: the subscription is
/// still `incomplete` in Kassa, yet it is paid. Another key is refused naming it (Stripe says
/// the page is complete), and the events then make that one active, with its credits once.
async fn risk_g5_a_page_paid_but_not_yet_reported_blocks_a_new_subscription_after_expiry(
    db: TestDb,
) {
    let shop = Arc::new(EmulatedShop::new(db, CaptureMethod::Automatic).await);
    let plan = pro_plan(&shop).await;
    let first = subscribe_as(&shop, &plan, "ada@example.com", "k1")
        .await
        .expect("subscribed");
    let session = shop.pay_session(&first.session_id, "pm_card_visa").await;
    assert_eq!(session["status"], "complete", "{session}");
    past_the_page_expiry(&shop, &first).await;
    assert_eq!(
        subscription(&shop, &first).await.status,
        SubscriptionStatus::Incomplete
    );
    let second = subscribe_as(&shop, &plan, "ada@example.com", "k2").await;
    assert!(
        refused_naming(second.clone(), &first.subscription_id),
        "{second:?}"
    );
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM subscriptions").await, 1);
    assert_eq!(provider_sessions(&shop).await.len(), 1);
    shop.deliver_events().await;
    assert_eq!(
        subscription(&shop, &first).await.status,
        SubscriptionStatus::Active
    );
    let (balance, entries) = ledger(&shop, &first.customer_id).await;
    assert_eq!((balance, entries.len()), (CREDITS, 1), "{entries:?}");
}
both_backends!(risk_g5_a_page_paid_but_not_yet_reported_blocks_a_new_subscription_after_expiry);

/// A page left unpaid until its time ran out (its expiry not reported yet) does not hold the
/// plan: another key ends that subscription and starts a new one with a page of its own; a
/// third key then gets that new page.
async fn risk_g5_an_expired_unreported_page_does_not_block_a_new_subscription(db: TestDb) {
    let shop = Arc::new(EmulatedShop::new(db, CaptureMethod::Automatic).await);
    let plan = pro_plan(&shop).await;
    let first = subscribe_as(&shop, &plan, "ada@example.com", "k1")
        .await
        .expect("subscribed");
    past_the_page_expiry(&shop, &first).await;
    let second = subscribe_as(&shop, &plan, "ada@example.com", "k2")
        .await
        .expect("a new subscription");
    assert_ne!(second.subscription_id, first.subscription_id);
    assert_ne!(second.session_id, first.session_id);
    assert_eq!(second.customer_id, first.customer_id);
    assert_eq!(
        subscription(&shop, &first).await.status,
        SubscriptionStatus::Canceled
    );
    let expired = shop
        .stripe(
            reqwest::Method::GET,
            &format!("/v1/checkout/sessions/{}", first.session_id),
            &[],
        )
        .await;
    assert_eq!(expired["status"], "expired", "{expired}");
    assert_eq!(
        subscribe_as(&shop, &plan, "ada@example.com", "k3").await,
        Ok(second.clone())
    );
    shop.deliver_events().await;
    assert_eq!(
        shop.scalar(
            "SELECT COUNT(*) FROM subscriptions WHERE status IN ('incomplete', 'active', 'past_due')"
        )
        .await,
        1
    );
    assert_eq!(provider_sessions(&shop).await.len(), 2);
}
both_backends!(risk_g5_an_expired_unreported_page_does_not_block_a_new_subscription);

/// `cus_` and 32 lowercase hex digits: the shape of every id `RandomIds` makes.
fn opaque_customer_id(id: &str) -> bool {
    id.strip_prefix("cus_").is_some_and(|rest| {
        rest.len() == 32
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// Defect 6: the storefront's answer to a subscribe carries the customer's id; a pack buyer's
/// (made when their paid order granted its credits) is as opaque as a new e-mail's, and names
/// no order.
async fn risk_s2_a_customer_id_answered_to_the_storefront_reveals_no_order(db: TestDb) {
    let shop = Arc::new(EmulatedShop::new(db, CaptureMethod::Automatic).await);
    let pack = kassa_app::catalog::NewProduct {
        seller_id: None,
        name: "100 credits".into(),
        variants: vec![kassa_app::catalog::NewVariant {
            sku: "PACK".into(),
            unit_amount_minor: kassa_testkit::shop::UNIT,
            currency: "eur".into(),
            attributes: std::collections::BTreeMap::new(),
            credits: 100,
        }],
    };
    shop.app.create_product(pack).await.expect("pack");
    shop.app.set_on_hand("PACK", None, 10).await.expect("stock");
    let order = shop.paid(&[("PACK", 1)]).await;
    assert_eq!(shop.status(&order.order_id).await, "paid");
    let plan = pro_plan(&shop).await;
    let buyer = subscribe_as(&shop, &plan, "ada@example.com", "k-buyer")
        .await
        .expect("the buyer subscribes");
    let stranger = subscribe_as(&shop, &plan, "grace@example.com", "k-new")
        .await
        .expect("a new e-mail subscribes");
    // The buyer's customer is the one their pack's credits went to.
    let (balance, entries) = ledger(&shop, &buyer.customer_id).await;
    assert_eq!(balance, 100, "{entries:?}");
    assert_eq!(entries[0].business_key, format!("order:{}", order.order_id));
    let order_hex = order.order_id.trim_start_matches("ord_");
    for id in [&buyer.customer_id, &stranger.customer_id] {
        assert!(opaque_customer_id(id), "{id}");
        assert!(
            !id.contains(&order.order_id) && !id.contains(order_hex),
            "{id}"
        );
    }
    assert_ne!(buyer.customer_id, stranger.customer_id);
}
both_backends!(risk_s2_a_customer_id_answered_to_the_storefront_reveals_no_order);
