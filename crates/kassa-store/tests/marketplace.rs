//! Marketplace sellers on both backends, against the emulator (seed 001, risk P10): a seller's
//! readiness comes from Stripe's `account.updated` events; a checkout of a seller who cannot
//! take charges is refused before anything is reserved, and one whose seller was disabled
//! after Kassa last heard is refused by Stripe and compensated in one transaction.

use std::collections::BTreeMap;

use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_app::checkout::CheckoutFlow;
use kassa_app::ports::{CaptureMethod, SellerRecord};
use kassa_app::sellers::SellerInput;
use kassa_testkit::shop::{EmulatedShop, UNIT, checkout_input};
use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

const STOCK: i64 = 5;

/// The shop with a seller whose account Stripe enabled (and Kassa heard so), selling BOOK.
async fn with_a_seller(db: TestDb) -> (EmulatedShop, SellerRecord) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let seller = enabled_seller(&shop, "Bookshop Berlin", "BOOK").await;
    (shop, seller)
}

/// A seller whose account Stripe enabled (and Kassa heard so), selling `sku` at `UNIT`.
async fn enabled_seller(shop: &EmulatedShop, name: &str, sku: &str) -> SellerRecord {
    let seller = shop
        .app
        .create_seller(SellerInput {
            name: name.into(),
            email: "books@example.com".into(),
            country: "DE".into(),
            key_scope: "secret".into(),
            idempotency_key: Some(format!("seller-{sku}")),
            actor: kassa_testkit::shop::actor(),
        })
        .await
        .expect("seller");
    assert!(!seller.charges_enabled, "not before onboarding");
    set_readiness(shop, &seller, true).await;
    shop.deliver_events().await;
    let seller = shop.app.seller(&seller.id).await.expect("seller");
    assert!(seller.charges_enabled, "{seller:?}");
    shop.app
        .create_product(NewProduct {
            name: format!("{name}'s {sku}"),
            variants: vec![NewVariant {
                sku: sku.into(),
                unit_amount_minor: UNIT,
                currency: "eur".into(),
                attributes: BTreeMap::new(),
                credits: 0,
            }],
            seller_id: Some(seller.id.clone()),
        })
        .await
        .expect("product");
    shop.app.set_on_hand(sku, None, STOCK).await.expect("stock");
    seller
}

/// Checkout of `cart_id` (its lines at `UNIT` each): the answer's status and JSON body, as the
/// storefront gets them.
async fn checkout(shop: &EmulatedShop, cart_id: &str, units: i64, key: &str) -> (u16, Value) {
    checkout_on(&shop.app, cart_id, units, key).await
}

/// The same, on `app` (an instance with other settings).
async fn checkout_on(app: &kassa_app::App, cart_id: &str, units: i64, key: &str) -> (u16, Value) {
    let input = checkout_input(cart_id, units * UNIT, key, CheckoutFlow::Embedded);
    let reply = app.checkout(input).await.expect("answered");
    let body = serde_json::from_str(&reply.response.body).expect("json");
    (reply.response.status, body)
}

/// A new cart of `lines`.
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

/// The seller's account at Stripe changes (the seller's onboarding, or Stripe taking its
/// capabilities away); Kassa hears of it only through the event.
async fn set_readiness(shop: &EmulatedShop, seller: &SellerRecord, enabled: bool) {
    let account = seller.account_id.as_deref().expect("account");
    shop.control(
        &format!("/_emulator/accounts/{account}"),
        json!({"charges_enabled": enabled, "payouts_enabled": enabled}),
    )
    .await;
}

async fn risk_p10_a_seller_disabled_between_cart_and_checkout_is_refused_before_reserving(
    db: TestDb,
) {
    let (shop, seller) = with_a_seller(db).await;
    let cart = cart(&shop, &[("BOOK", 2)]).await;
    set_readiness(&shop, &seller, false).await;
    shop.deliver_events().await;
    let (status, refused) = checkout(&shop, &cart, 2, "p10").await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "seller_unavailable");
    assert_eq!(refused["error"]["seller_id"], seller.id.as_str());
    assert_eq!(shop.stock("BOOK").await, (STOCK, 0, 0), "nothing reserved");
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM orders").await, 0);
    // Enabled again: the same cart checks out.
    set_readiness(&shop, &seller, true).await;
    shop.deliver_events().await;
    let (status, placed) = checkout(&shop, &cart, 2, "p10-again").await;
    assert_eq!(status, 201, "{placed}");
    let intent = shop
        .intent(
            placed["payment"]["payment_intent_id"]
                .as_str()
                .expect("intent"),
        )
        .await;
    assert_eq!(
        intent["transfer_data"]["destination"].as_str(),
        seller.account_id.as_deref(),
        "a destination charge"
    );
}
both_backends!(risk_p10_a_seller_disabled_between_cart_and_checkout_is_refused_before_reserving);

/// Disabled at Stripe after Kassa last heard: the local phase passes, Stripe refuses the
/// destination charge, and the refusal is compensated — order canceled, stock released.
async fn risk_p10_a_seller_disabled_before_the_provider_call_is_compensated(db: TestDb) {
    let (shop, seller) = with_a_seller(db).await;
    set_readiness(&shop, &seller, false).await;
    let late = cart(&shop, &[("BOOK", 2)]).await;
    let (status, refused) = checkout(&shop, &late, 2, "p10-late").await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "seller_unavailable");
    assert_eq!(refused["error"]["seller_id"], seller.id.as_str());
    assert_eq!(shop.stock("BOOK").await, (STOCK, 0, 0), "released");
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE status = 'canceled'")
            .await,
        1
    );
    // Kassa learns of it from reconciliation, which reads each seller's account (Stripe sends
    // account.updated to Connect endpoints only); the next checkout is refused before reserving.
    let report = shop
        .app
        .reconcile(&kassa_app::reconcile::Quietly)
        .await
        .expect("reconciled");
    assert_eq!(report.sellers_checked, 1);
    assert!(
        !shop
            .app
            .seller(&seller.id)
            .await
            .expect("seller")
            .charges_enabled
    );
    let after = cart(&shop, &[("BOOK", 1)]).await;
    let (status, again) = checkout(&shop, &after, 1, "p10-after").await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("seller_unavailable"))
    );
}
both_backends!(risk_p10_a_seller_disabled_before_the_provider_call_is_compensated);

/// A cart mixing a seller's products with the shop's is one charge for the order's transfer
/// group (no destination), and a seller's creation is idempotent with a key.
async fn mixed_carts_are_one_charge_and_sellers_are_created_once_per_key(db: TestDb) {
    let (shop, seller) = with_a_seller(db).await;
    let mixed = cart(&shop, &[("BOOK", 1), ("MUG", 1)]).await;
    let (status, placed) = checkout(&shop, &mixed, 2, "mixed").await;
    assert_eq!(status, 201, "{placed}");
    let intent = shop
        .intent(placed["payment"]["payment_intent_id"].as_str().expect("pi"))
        .await;
    assert_eq!(intent["transfer_group"], placed["order"]["id"]);
    assert!(intent["transfer_data"].is_null(), "{intent}");
    let again = shop
        .app
        .create_seller(SellerInput {
            name: "Bookshop Berlin".into(),
            email: "books@example.com".into(),
            country: "DE".into(),
            key_scope: "secret".into(),
            idempotency_key: Some("seller-BOOK".into()),
            actor: kassa_testkit::shop::actor(),
        })
        .await
        .expect("replayed");
    assert_eq!(again.id, seller.id);
    assert_eq!(again.account_id, seller.account_id);
    let unknown = shop
        .app
        .create_product(NewProduct {
            name: "Orphan".into(),
            variants: vec![NewVariant {
                sku: "ORPHAN".into(),
                unit_amount_minor: UNIT,
                currency: "eur".into(),
                attributes: BTreeMap::new(),
                credits: 0,
            }],
            seller_id: Some("sel_nobody".into()),
        })
        .await;
    assert!(
        matches!(&unknown, Err(kassa_app::AppError::InvalidRequest { param: Some(param), .. }) if param == "seller_id"),
        "{unknown:?}"
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM variants WHERE sku = 'ORPHAN'")
            .await,
        0
    );
    let audited = shop
        .scalar("SELECT COUNT(*) FROM audit_log WHERE entity_type = 'seller' AND action IN ('created', 'account_linked', 'readiness')")
        .await;
    assert_eq!(audited, 3, "created, linked, enabled");
}
both_backends!(mixed_carts_are_one_charge_and_sellers_are_created_once_per_key);

/// A single seller's order is a destination charge with the platform's fee (rounded down);
/// a refund takes the seller's share back from their account; Stripe's charge agrees with what
/// Kassa decided, and a fee changed by hand is reported (invariant 10, the books).
async fn a_sellers_order_is_a_destination_charge_and_its_refund_reverses_the_transfer(db: TestDb) {
    let (shop, seller) = with_a_seller(db).await;
    let with_fee = shop.instance_with_fee(CaptureMethod::Automatic, 250);
    let cart = cart(&shop, &[("BOOK", 3)]).await;
    let (status, placed) = checkout_on(&with_fee, &cart, 3, "fee").await;
    assert_eq!(status, 201, "{placed}");
    let intent_id = placed["payment"]["payment_intent_id"].as_str().expect("pi");
    let intent = shop.intent(intent_id).await;
    assert_eq!(
        intent["transfer_data"]["destination"].as_str(),
        seller.account_id.as_deref()
    );
    let fee = kassa_domain::marketplace::platform_fee(3 * UNIT, 250);
    assert_eq!(intent["application_fee_amount"], fee);
    assert_eq!(fee, 93, "3750 × 2.5 % = 93.75, rounded down");
    shop.stripe(
        reqwest::Method::POST,
        &format!("/v1/payment_intents/{intent_id}/confirm"),
        &[("payment_method", "pm_card_visa")],
    )
    .await;
    shop.deliver_events().await;
    let order_id = placed["order"]["id"].as_str().expect("order");
    assert_eq!(shop.status(order_id).await, "paid");
    let refund = shop
        .app
        .create_refund(kassa_app::refunds::RefundInput {
            order_id: order_id.to_owned(),
            key_scope: "secret".into(),
            idempotency_key: Some("half".into()),
            amount_minor: Some(UNIT),
            reason: None,
            restock: false,
            actor: kassa_testkit::shop::actor(),
        })
        .await
        .expect("refunded");
    let at_stripe = shop
        .stripe(
            reqwest::Method::GET,
            &format!(
                "/v1/refunds/{}",
                refund.provider_refund_id.as_deref().expect("sent")
            ),
            &[],
        )
        .await;
    assert!(
        at_stripe["transfer_reversal"].is_string(),
        "the seller's share taken back: {at_stripe}"
    );
    shop.deliver_events().await;
    assert_books_hold(&shop).await;
    // Paid 3750 − 93; the refund of 1250 took back 3657 × 1250 / 3750 = 1219, as Stripe's
    // reversal did.
    assert_eq!(at_stripe["amount"], UNIT);
    let balance = shop.app.seller_balance(&seller.id).await.expect("balance");
    assert_eq!(
        (balance[0].paid_minor, balance[0].reversed_minor),
        (3 * UNIT - fee, 1_219)
    );

    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query("UPDATE payments SET application_fee = application_fee + 1 WHERE order_id = $1")
        .bind(order_id)
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.invariant == 10 && v.ids.iter().any(|id| id == order_id)),
        "{:#?}",
        report.violations
    );
}
both_backends!(a_sellers_order_is_a_destination_charge_and_its_refund_reverses_the_transfer);

/// With manual capture, a capture of less than was authorized sends the fee on what is captured
/// (the rate the order was placed with), and the books still agree with Stripe.
async fn a_smaller_capture_of_a_sellers_order_takes_the_fee_on_what_is_captured(db: TestDb) {
    let (shop, _seller) = with_a_seller(db).await;
    let app = shop.instance_with_fee(CaptureMethod::Manual, 250);
    let cart = cart(&shop, &[("BOOK", 2)]).await;
    let (status, placed) = checkout_on(&app, &cart, 2, "manual").await;
    assert_eq!(status, 201, "{placed}");
    let intent_id = placed["payment"]["payment_intent_id"].as_str().expect("pi");
    let order_id = placed["order"]["id"].as_str().expect("order");
    shop.stripe(
        reqwest::Method::POST,
        &format!("/v1/payment_intents/{intent_id}/confirm"),
        &[("payment_method", "pm_card_visa")],
    )
    .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(order_id).await, "authorized");
    app.capture_order(order_id, Some(UNIT), &kassa_testkit::shop::actor())
        .await
        .expect("captured");
    shop.deliver_events().await;
    let intent = shop.intent(intent_id).await;
    assert_eq!(intent["amount_received"], UNIT);
    assert_eq!(
        intent["application_fee_amount"],
        kassa_domain::marketplace::platform_fee(UNIT, 250)
    );
    assert_books_hold(&shop).await;
}
both_backends!(a_smaller_capture_of_a_sellers_order_takes_the_fee_on_what_is_captured);

/// The shop with two enabled sellers (BOOK, PEN) and an order of both sellers' products and the
/// shop's own (MUG), placed at a 10 % fee and paid: one charge for the order's transfer group.
async fn several_sellers_paid(db: TestDb) -> (EmulatedShop, [SellerRecord; 2], String) {
    several_sellers_paid_with(db, "pm_card_visa").await
}

/// The same, paid with `card`.
async fn several_sellers_paid_with(
    db: TestDb,
    card: &str,
) -> (EmulatedShop, [SellerRecord; 2], String) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let books = enabled_seller(&shop, "Bookshop Berlin", "BOOK").await;
    let pens = enabled_seller(&shop, "Pens of Porto", "PEN").await;
    let app = shop.instance_with_fee(CaptureMethod::Automatic, 1_000);
    let cart = cart(&shop, &[("BOOK", 2), ("PEN", 1), ("MUG", 1)]).await;
    let (status, placed) = checkout_on(&app, &cart, 4, "several").await;
    assert_eq!(status, 201, "{placed}");
    let intent_id = placed["payment"]["payment_intent_id"].as_str().expect("pi");
    shop.stripe(
        reqwest::Method::POST,
        &format!("/v1/payment_intents/{intent_id}/confirm"),
        &[("payment_method", card)],
    )
    .await;
    shop.deliver_events().await;
    let order_id = placed["order"]["id"].as_str().expect("order").to_owned();
    assert_eq!(shop.status(&order_id).await, "paid");
    (shop, [books, pens], order_id)
}

/// The order's transfers at Stripe: (destination, amount, amount reversed), by destination.
async fn transfers_at_stripe(shop: &EmulatedShop, order_id: &str) -> Vec<(String, i64, i64)> {
    let list = shop
        .stripe(
            reqwest::Method::GET,
            &format!("/v1/transfers?transfer_group={order_id}&limit=100"),
            &[],
        )
        .await;
    let mut transfers: Vec<(String, i64, i64)> = list["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| {
            (
                t["destination"].as_str().expect("destination").to_owned(),
                t["amount"].as_i64().expect("amount"),
                t["amount_reversed"].as_i64().expect("reversed"),
            )
        })
        .collect();
    transfers.sort();
    transfers
}

/// Each of `several_sellers_paid`'s sellers has one transfer of their share, none reversed.
async fn assert_each_paid_once(
    shop: &EmulatedShop,
    order_id: &str,
    [books, pens]: [&SellerRecord; 2],
) {
    // BOOK 2 × 1250 = 2500, 10 % fee → 2250; PEN 1250 → 1125; MUG stays with the platform.
    let mut expected = vec![(account(books), 2_250, 0), (account(pens), 1_125, 0)];
    expected.sort();
    assert_eq!(transfers_at_stripe(shop, order_id).await, expected);
}

/// The invariant check passes, the books included.
async fn assert_books_hold(shop: &EmulatedShop) {
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(report.passed(), "{:#?}", report.violations);
}

/// A payout round that makes the first transfer at Stripe and dies before Kassa records it.
async fn die_after_the_first_transfer(shop: &EmulatedShop) {
    shop.db
        .store
        .faults()
        .arm(kassa_store::FAULT_BEFORE_TRANSFER_RECORD);
    assert!(shop.app.pay_sellers(10).await.is_err(), "the round dies");
}

/// Kassa's and Stripe's clocks move 25 hours: Stripe forgets the keys of the day before.
async fn more_than_a_day_passes(shop: &EmulatedShop) {
    let a_day = 25 * 3600;
    shop.control("/_emulator/clock/advance", json!({"seconds": a_day}))
        .await;
    shop.clock.advance(a_day);
}

/// A refund of `amount` (everything left when `None`) of the order, with `key`.
fn refund_of(order_id: &str, amount: Option<i64>, key: &str) -> kassa_app::refunds::RefundInput {
    kassa_app::refunds::RefundInput {
        order_id: order_id.to_owned(),
        key_scope: "secret".into(),
        idempotency_key: Some(key.into()),
        amount_minor: amount,
        reason: None,
        restock: false,
        actor: kassa_testkit::shop::actor(),
    }
}

fn account(seller: &SellerRecord) -> String {
    seller.account_id.clone().expect("account")
}

/// Multi-seller acceptance: after capture each seller gets one transfer of their lines less the
/// fee, however often the capture's events arrive and however many workers run at once; the
/// shop's own line and the fees stay with the platform, and the books add up.
async fn several_sellers_are_each_paid_once_under_duplicated_events_and_concurrent_workers(
    db: TestDb,
) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    let other = shop.second_instance(CaptureMethod::Automatic);
    for _ in 0..2 {
        shop.deliver_events().await;
        let (one, two) = tokio::join!(shop.app.pay_sellers(10), other.pay_sellers(10));
        one.expect("paid");
        two.expect("paid");
    }
    assert_each_paid_once(&shop, &order_id, [&books, &pens]).await;
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM seller_transfers WHERE provider_transfer_id IS NOT NULL")
            .await,
        2
    );
    let keep = shop
        .scalar("SELECT application_fee FROM payments WHERE transfer_group IS NOT NULL")
        .await;
    assert_eq!(keep, 4 * UNIT - 2_250 - 1_125, "the mug and both fees");
    let balance = shop.app.seller_balance(&books.id).await.expect("balance");
    assert_eq!(
        (
            balance.len(),
            balance[0].paid_minor,
            balance[0].reversed_minor,
            balance[0].owed_minor
        ),
        (1, 2_250, 0, 0)
    );
    shop.deliver_events().await;
    assert_books_hold(&shop).await;
}
both_backends!(several_sellers_are_each_paid_once_under_duplicated_events_and_concurrent_workers);

/// A crash between two transfers — the first made at Stripe, Kassa's record of it lost, the
/// second never asked for — is finished by the next round: the first asked again with its key
/// (Stripe answers with the transfer it made), the second made; one transfer per seller.
async fn a_crash_between_transfers_makes_each_transfer_once(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    die_after_the_first_transfer(&shop).await;
    assert_eq!(
        transfers_at_stripe(&shop, &order_id).await.len(),
        1,
        "one made"
    );
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM seller_transfers WHERE provider_transfer_id IS NOT NULL")
            .await,
        0,
        "none recorded"
    );
    let balance = shop.app.seller_balance(&books.id).await.expect("balance");
    assert_eq!((balance[0].paid_minor, balance[0].owed_minor), (0, 2_250));
    // Stripe's answer to the next one is lost too: its outcome is unknown, it stays unsent.
    shop.fault(
        "POST /v1/transfers",
        json!(["lose_response", {"status": 500}, {"status": 500}]),
    )
    .await;
    shop.app.pay_sellers(10).await.expect("round");
    shop.clear_faults().await;
    shop.app.pay_sellers(10).await.expect("round");
    assert_each_paid_once(&shop, &order_id, [&books, &pens]).await;
    shop.deliver_events().await;
    assert_books_hold(&shop).await;
}
both_backends!(a_crash_between_transfers_makes_each_transfer_once);

/// A partial refund takes back each seller's proportion of it from their transfer (rounded
/// down); the refund of the rest takes back everything left, and the platform's fee comes back
/// with it. Kassa's books equal Stripe's; a transfer changed by hand is reported.
async fn a_partial_refund_reverses_each_sellers_share_and_the_whole_refund_the_rest(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    shop.app.pay_sellers(10).await.expect("paid");
    let refund = |amount: Option<i64>, key: &str| refund_of(&order_id, amount, key);
    shop.app
        .create_refund(refund(Some(1_001), "part"))
        .await
        .expect("refunded");
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("reversed");
    // Of 5000 captured, 1001 refunded: books 2250 × 1001 / 5000 = 450.45 → 450,
    // pens 1125 × 1001 / 5000 = 225.225 → 225.
    let mut expected = vec![(account(&books), 2_250, 450), (account(&pens), 1_125, 225)];
    expected.sort();
    assert_eq!(transfers_at_stripe(&shop, &order_id).await, expected);
    let balance = shop.app.seller_balance(&books.id).await.expect("balance");
    assert_eq!(
        (
            balance[0].paid_minor,
            balance[0].reversed_minor,
            balance[0].owed_minor
        ),
        (2_250, 450, 0)
    );
    shop.app
        .create_refund(refund(None, "rest"))
        .await
        .expect("refunded");
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("reversed");
    shop.app.pay_sellers(10).await.expect("nothing more");
    let mut expected = vec![
        (account(&books), 2_250, 2_250),
        (account(&pens), 1_125, 1_125),
    ];
    expected.sort();
    assert_eq!(transfers_at_stripe(&shop, &order_id).await, expected);
    let balance = shop.app.seller_balance(&pens.id).await.expect("balance");
    assert_eq!(
        (
            balance[0].paid_minor,
            balance[0].reversed_minor,
            balance[0].owed_minor
        ),
        (1_125, 1_125, 0),
        "the seller keeps nothing of a wholly refunded order"
    );
    assert_books_hold(&shop).await;

    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    sqlx::query("UPDATE seller_transfers SET amount = amount + 1, fee_amount = fee_amount - 1 WHERE seller_id = $1")
        .bind(&pens.id)
        .execute(&pool)
        .await
        .expect("tamper");
    pool.close().await;
    let report = shop.app.check_invariants().await.expect("checked");
    let books_broken = report
        .violations
        .iter()
        .filter(|v| v.invariant == 11 && v.ids == [order_id.clone()])
        .count();
    assert_eq!(
        books_broken, 3,
        "books, shares and Stripe's amount: {:#?}",
        report.violations
    );
}
both_backends!(a_partial_refund_reverses_each_sellers_share_and_the_whole_refund_the_rest);

/// A seller's products on the hosted page: the page's PaymentIntent carries the order's
/// transfer group, and the seller is paid by a transfer after the customer pays.
async fn a_sellers_products_on_the_hosted_page_are_paid_by_transfer(db: TestDb) {
    let (shop, seller) = with_a_seller(db).await;
    let placed = shop.hosted_checkout(&[("BOOK", 1)]).await;
    shop.pay_session(&placed.session_id, "pm_card_visa").await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&placed.order_id).await, "paid");
    shop.app.pay_sellers(10).await.expect("paid");
    assert_eq!(
        transfers_at_stripe(&shop, &placed.order_id).await,
        vec![(account(&seller), UNIT, 0)],
        "no fee at the default rate"
    );
}
both_backends!(a_sellers_products_on_the_hosted_page_are_paid_by_transfer);

/// A disputed order's sellers wait: nothing is transferred while the dispute is open; once it
/// is won, each seller is paid their share.
async fn a_disputed_orders_transfers_wait_for_the_dispute(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    let order = shop.app.order(&order_id).await.expect("order");
    let intent = order
        .payment
        .and_then(|p| p.payment_intent_id)
        .expect("intent");
    let dispute = shop
        .control(
            &format!("/_emulator/payment_intents/{intent}/dispute"),
            json!({}),
        )
        .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&order_id).await, "disputed");
    shop.app.pay_sellers(10).await.expect("round");
    assert!(transfers_at_stripe(&shop, &order_id).await.is_empty());
    // What the sellers are owed stays in sight, held until the dispute closes.
    let balance = shop.app.seller_balance(&books.id).await.expect("balance");
    assert_eq!(
        (balance[0].owed_minor, balance[0].held_minor),
        (0, 2_250),
        "{balance:?}"
    );
    assert_eq!(
        balance[0].holds[0].reason,
        kassa_domain::marketplace::DISPUTE_OPEN
    );
    let id = dispute["id"].as_str().expect("dispute id");
    shop.control(
        &format!("/_emulator/disputes/{id}/close"),
        json!({"outcome": "won"}),
    )
    .await;
    shop.deliver_events().await;
    assert_eq!(shop.status(&order_id).await, "paid");
    shop.app.pay_sellers(10).await.expect("round");
    assert_each_paid_once(&shop, &order_id, [&books, &pens]).await;
}
both_backends!(a_disputed_orders_transfers_wait_for_the_dispute);

/// Risk W6 on a marketplace order: Stripe's own `payment_intent.succeeded` delivered again
/// under another event id with another amount flags the paid order `amount_mismatch`. Its
/// sellers' transfers wait for a person — but in sight: until the payout worker records the
/// hold the check reports the order (invariant 11), then each seller's balance shows their
/// share `held` with the flag's reason (not `owed` 0); once the flag is cleared, each seller is
/// paid once and nothing is held any more.
async fn risk_w6_a_paid_order_flagged_amount_mismatch_holds_its_sellers_money_in_sight(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    let events = shop.events().await;
    let succeeded = events
        .iter()
        .rev()
        .find(|e| {
            e["type"] == "payment_intent.succeeded"
                && e["data"]["object"]["transfer_group"] == order_id.as_str()
        })
        .expect("Stripe's payment_intent.succeeded");
    let mut forged = succeeded.clone();
    forged["id"] = json!("evt_another_amount");
    forged["data"]["object"]["amount"] = json!(4 * UNIT + 1);
    shop.deliver(&forged).await.expect("recorded");
    assert_eq!(shop.status(&order_id).await, "paid");
    let order = shop.app.order(&order_id).await.expect("order");
    let reason = order.needs_attention.clone().expect("flagged");
    assert!(reason.starts_with("amount_mismatch"), "{reason}");

    // Before the payout worker runs, what the sellers are owed is already held in sight.
    let books_share = 2_250;
    let pens_share = 1_125;
    for (seller, share) in [(&books, books_share), (&pens, pens_share)] {
        let balance = shop.app.seller_balance(&seller.id).await.expect("balance");
        assert_eq!(balance.len(), 1, "{balance:?}");
        assert_eq!(
            (balance[0].owed_minor, balance[0].held_minor),
            (0, share),
            "{balance:?}"
        );
    }
    // Long after, with no hold recorded (the worker never ran): reported.
    shop.clock
        .advance(kassa_app::check::STALE_HOLD_GRACE_SECS + 1);
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(
        report.violations.iter().any(|v| v.invariant == 11
            && v.what
                .contains("neither a transfer planned nor a recorded hold")
            && v.ids.iter().any(|id| id == &order_id)),
        "the unpaid sellers are reported: {:#?}",
        report.violations
    );

    // The payout round sends nothing and records why.
    shop.app.pay_sellers(10).await.expect("round");
    shop.app.pay_sellers(10).await.expect("round");
    assert!(transfers_at_stripe(&shop, &order_id).await.is_empty());
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM seller_transfers").await,
        0
    );
    let pool = sqlx::AnyPool::connect(&shop.db.url).await.expect("pool");
    let held: Option<String> =
        sqlx::query_scalar("SELECT transfers_held FROM payments WHERE order_id = $1")
            .bind(&order_id)
            .fetch_one(&pool)
            .await
            .expect("payment");
    assert_eq!(held.as_deref(), Some(reason.as_str()));
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'seller_transfers_held'")
            .await,
        1,
        "audited once"
    );
    for (seller, share) in [(&books, books_share), (&pens, pens_share)] {
        let balance = shop.app.seller_balance(&seller.id).await.expect("balance");
        assert_eq!(
            (
                balance[0].paid_minor,
                balance[0].owed_minor,
                balance[0].held_minor
            ),
            (0, 0, share),
            "{balance:?}"
        );
        assert_eq!(balance[0].holds.len(), 1, "{balance:?}");
        assert_eq!(balance[0].holds[0].order_id, order_id);
        assert_eq!(balance[0].holds[0].amount_minor, share);
        assert_eq!(balance[0].holds[0].reason, reason);
    }
    shop.clock
        .advance(kassa_app::check::STALE_HOLD_GRACE_SECS + 1);
    assert_books_hold(&shop).await;

    // A person resolves the flag (risk N1): the next round pays each seller once.
    shop.app
        .resolve_attention(
            &order_id,
            kassa_app::attention::ResolveRequest {
                action: "dismiss".into(),
                note: "the second report was a replay with a wrong amount".into(),
            },
            &kassa_testkit::shop::actor(),
        )
        .await
        .expect("resolved");
    shop.app.pay_sellers(10).await.expect("round");
    shop.app.pay_sellers(10).await.expect("round");
    assert_each_paid_once(&shop, &order_id, [&books, &pens]).await;
    let held: Option<String> =
        sqlx::query_scalar("SELECT transfers_held FROM payments WHERE order_id = $1")
            .bind(&order_id)
            .fetch_one(&pool)
            .await
            .expect("payment");
    pool.close().await;
    assert_eq!(held, None, "planned: no longer held");
    for (seller, share) in [(&books, books_share), (&pens, pens_share)] {
        let balance = shop.app.seller_balance(&seller.id).await.expect("balance");
        assert_eq!(
            (
                balance[0].paid_minor,
                balance[0].owed_minor,
                balance[0].held_minor
            ),
            (share, 0, 0),
            "{balance:?}"
        );
        assert!(balance[0].holds.is_empty(), "{balance:?}");
    }
    assert_books_hold(&shop).await;
}
both_backends!(risk_w6_a_paid_order_flagged_amount_mismatch_holds_its_sellers_money_in_sight);

/// A seller disabled at Stripe after the order was paid: their transfer is refused (reported by
/// the check, the refund's reversal of it waits), and once Stripe reports them ready again the
/// transfer is asked for under a new key and made, then its reversal.
async fn a_refused_transfer_is_made_once_the_seller_is_ready_again(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    // Disabled at Stripe; Kassa has not heard yet and still believes the seller ready.
    set_readiness(&shop, &pens, false).await;
    shop.app.pay_sellers(10).await.expect("round");
    let books_only = vec![(account(&books), 2_250, 0)];
    assert_eq!(transfers_at_stripe(&shop, &order_id).await, books_only);
    // What Kassa believed when Stripe refused is no reason to ask again.
    shop.clock.advance(1);
    shop.app.pay_sellers(10).await.expect("round");
    assert_eq!(transfers_at_stripe(&shop, &order_id).await, books_only);
    assert_eq!(
        shop.scalar("SELECT MAX(attempt) FROM seller_transfers")
            .await,
        1,
        "not asked again"
    );
    shop.deliver_events().await;
    let report = shop.app.check_invariants().await.expect("checked");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.invariant == 11 && v.what.contains("refused")),
        "the refused transfer is reported: {:#?}",
        report.violations
    );
    shop.app
        .create_refund(refund_of(&order_id, Some(1_001), "part"))
        .await
        .expect("refunded");
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("round");
    let balance = shop.app.seller_balance(&pens.id).await.expect("balance");
    assert_eq!(
        (balance[0].paid_minor, balance[0].owed_minor),
        (0, 1_125 - 225),
        "owed the transfer less the refund's share"
    );
    shop.clock.advance(1);
    set_readiness(&shop, &pens, true).await;
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("round");
    let mut expected = vec![(account(&books), 2_250, 450), (account(&pens), 1_125, 225)];
    expected.sort();
    assert_eq!(transfers_at_stripe(&shop, &order_id).await, expected);
    assert_books_hold(&shop).await;
}
both_backends!(a_refused_transfer_is_made_once_the_seller_is_ready_again);

/// Stripe forgets idempotency keys after a day: a transfer whose answer was lost and that is
/// sent again later than that is found in the order's transfer group, not made a second time.
async fn a_transfer_asked_for_again_after_a_day_is_found_not_made_twice(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    die_after_the_first_transfer(&shop).await;
    more_than_a_day_passes(&shop).await;
    shop.app.pay_sellers(10).await.expect("round");
    assert_each_paid_once(&shop, &order_id, [&books, &pens]).await;
}
both_backends!(a_transfer_asked_for_again_after_a_day_is_found_not_made_twice);

/// A refund that fails after it succeeded takes nothing from the sellers: its reversal of a
/// transfer not made yet is dropped, and a later refund takes each seller's whole share of what
/// stands refunded — not less because the failed one was counted.
async fn a_refund_that_fails_later_takes_nothing_and_skews_no_later_reversal(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid_with(db, "pm_card_refundFail").await;
    set_readiness(&shop, &pens, false).await;
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("round");
    let refund = |amount: Option<i64>, key: &str| refund_of(&order_id, amount, key);
    shop.app
        .create_refund(refund(Some(1_001), "will-fail"))
        .await
        .expect("refunded");
    shop.deliver_events().await;
    // Books' reversal is made; pens' waits for its transfer.
    shop.app.pay_sellers(10).await.expect("round");
    let intent = shop
        .app
        .order(&order_id)
        .await
        .expect("order")
        .payment
        .and_then(|p| p.payment_intent_id)
        .expect("intent");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while shop.provider_refunds(&intent).await.1 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the emulator fails the refund"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shop.deliver_events().await;
    shop.clock.advance(1);
    set_readiness(&shop, &pens, true).await;
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("round");
    let mut expected = vec![(account(&books), 2_250, 450), (account(&pens), 1_125, 0)];
    expected.sort();
    assert_eq!(
        transfers_at_stripe(&shop, &order_id).await,
        expected,
        "pens' reversal of the failed refund dropped"
    );
    shop.app
        .create_refund(refund(None, "everything"))
        .await
        .expect("refunded");
    shop.deliver_events().await;
    shop.app.pay_sellers(10).await.expect("round");
    let mut expected = vec![
        (account(&books), 2_250, 2_250),
        (account(&pens), 1_125, 1_125),
    ];
    expected.sort();
    assert_eq!(transfers_at_stripe(&shop, &order_id).await, expected);
}
both_backends!(a_refund_that_fails_later_takes_nothing_and_skews_no_later_reversal);

/// The same for a reversal: one made at Stripe whose answer was lost, sent again after Stripe
/// forgot its key, is found among its transfer's reversals by Kassa's refund id.
async fn a_reversal_asked_for_again_after_a_day_is_found_not_made_twice(db: TestDb) {
    let (shop, [books, pens], order_id) = several_sellers_paid(db).await;
    shop.app.pay_sellers(10).await.expect("paid");
    shop.app
        .create_refund(refund_of(&order_id, Some(1_001), "part"))
        .await
        .expect("refunded");
    shop.deliver_events().await;
    shop.fault(
        "POST /v1/transfers/*/reversals",
        json!(["lose_response", {"status": 500}, {"status": 500}]),
    )
    .await;
    shop.app.pay_sellers(10).await.expect("round");
    shop.clear_faults().await;
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM transfer_reversals WHERE provider_reversal_id IS NULL")
            .await,
        1,
        "one answer lost"
    );
    more_than_a_day_passes(&shop).await;
    shop.app.pay_sellers(10).await.expect("round");
    let mut expected = vec![(account(&books), 2_250, 450), (account(&pens), 1_125, 225)];
    expected.sort();
    assert_eq!(transfers_at_stripe(&shop, &order_id).await, expected);
    assert_books_hold(&shop).await;
}
both_backends!(a_reversal_asked_for_again_after_a_day_is_found_not_made_twice);
