//! Marketplace sellers on both backends, against the emulator (seed 001, risk P10): a seller's
//! readiness comes from Stripe's `account.updated` events; a checkout of a seller who cannot
//! take charges is refused before anything is reserved, and one whose seller was disabled
//! after Kassa last heard is refused by Stripe and compensated in one transaction.

use std::collections::BTreeMap;

use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_app::ports::{CaptureMethod, SellerRecord};
use kassa_app::sellers::SellerInput;
use kassa_testkit::shop::{EmulatedShop, UNIT};
use kassa_testkit::{TestDb, both_backends};
use serde_json::{Value, json};

const STOCK: i64 = 5;

/// The shop with a seller whose account Stripe enabled (and Kassa heard so), selling BOOK.
async fn with_a_seller(db: TestDb) -> (EmulatedShop, SellerRecord) {
    let shop = EmulatedShop::new(db, CaptureMethod::Automatic).await;
    let seller = shop
        .app
        .create_seller(SellerInput {
            name: "Bookshop Berlin".into(),
            email: "books@example.com".into(),
            country: "DE".into(),
            key_scope: "secret".into(),
            idempotency_key: Some("seller-1".into()),
        })
        .await
        .expect("seller");
    assert!(!seller.charges_enabled, "not before onboarding");
    set_readiness(&shop, &seller, true).await;
    shop.deliver_events().await;
    let seller = shop.app.seller(&seller.id).await.expect("seller");
    assert!(seller.charges_enabled, "{seller:?}");
    shop.app
        .create_product(NewProduct {
            name: "A book".into(),
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
    shop.app
        .set_on_hand("BOOK", None, STOCK)
        .await
        .expect("stock");
    (shop, seller)
}

/// Checkout of `cart_id` (its lines at `UNIT` each): the answer's status and JSON body, as the
/// storefront gets them.
async fn checkout(shop: &EmulatedShop, cart_id: &str, units: i64, key: &str) -> (u16, Value) {
    let reply = shop
        .app
        .checkout(kassa_app::checkout::CheckoutInput {
            cart_id: cart_id.to_owned(),
            key_scope: "publishable".into(),
            idempotency_key: Some(key.into()),
            email: "ada@example.com".into(),
            shipping: kassa_app::ports::ShippingAddress {
                name: "Ada".into(),
                line1: "1 St".into(),
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            expected_total_minor: units * UNIT,
            flow: kassa_app::checkout::CheckoutFlow::Embedded,
            actor: kassa_testkit::shop::actor(),
        })
        .await
        .expect("answered");
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
    assert_eq!(status, 402, "{refused}");
    assert_eq!(refused["error"]["code"], "provider_refused");
    assert_eq!(shop.stock("BOOK").await, (STOCK, 0, 0), "released");
    assert_eq!(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE status = 'canceled'")
            .await,
        1
    );
    // Kassa hears of it now: the next checkout is refused before reserving.
    shop.deliver_events().await;
    let after = cart(&shop, &[("BOOK", 1)]).await;
    let (status, again) = checkout(&shop, &after, 1, "p10-after").await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("seller_unavailable"))
    );
}
both_backends!(risk_p10_a_seller_disabled_before_the_provider_call_is_compensated);

/// Until Kassa pays sellers by transfers, a cart mixing a seller's products with others is
/// refused before reserving, and a seller's creation is idempotent with a key.
async fn mixed_carts_are_refused_and_sellers_are_created_once_per_key(db: TestDb) {
    let (shop, seller) = with_a_seller(db).await;
    let mixed = cart(&shop, &[("BOOK", 1), ("MUG", 1)]).await;
    let (status, refused) = checkout(&shop, &mixed, 2, "mixed").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("invalid_state"))
    );
    assert_eq!(shop.stock("BOOK").await, (STOCK, 0, 0));
    let again = shop
        .app
        .create_seller(SellerInput {
            name: "Bookshop Berlin".into(),
            email: "books@example.com".into(),
            country: "DE".into(),
            key_scope: "secret".into(),
            idempotency_key: Some("seller-1".into()),
        })
        .await
        .expect("replayed");
    assert_eq!(again.id, seller.id);
    assert_eq!(again.account_id, seller.account_id);
    let unknown = shop
        .app
        .create_product(NewProduct {
            name: "Orphan".into(),
            variants: vec![],
            seller_id: Some("sel_nobody".into()),
        })
        .await;
    assert!(unknown.is_err());
}
both_backends!(mixed_carts_are_refused_and_sellers_are_created_once_per_key);
