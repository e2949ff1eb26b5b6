//! Catalog, stock and cart behaviour through the use cases, on SQLite and on PostgreSQL.

use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_app::{App, AppError};
use kassa_domain::limits::{CART_LINES_MAX, LINE_QUANTITY_MAX};
use kassa_testkit::{TestDb, both_backends};
use std::collections::BTreeMap;

fn app(db: &TestDb) -> App {
    kassa_testkit::app(db)
}

fn variant(sku: &str, unit_amount_minor: i64, currency: &str) -> NewVariant {
    NewVariant {
        sku: sku.to_owned(),
        unit_amount_minor,
        currency: currency.to_owned(),
        attributes: BTreeMap::new(),
        credits: 0,
    }
}

async fn product(app: &App, name: &str, variants: Vec<NewVariant>) {
    app.create_product(NewProduct {
        seller_id: None,
        name: name.to_owned(),
        variants,
    })
    .await
    .expect("product is created");
}

async fn risk_u1_changing_one_line_leaves_other_lines_of_the_product_alone(db: TestDb) {
    let app = app(&db);
    product(
        &app,
        "T-shirt",
        vec![variant("TEE-S", 1500, "eur"), variant("TEE-M", 1500, "eur")],
    )
    .await;
    let cart = app.create_cart("eur").await.expect("cart");
    app.add_cart_line(&cart.id, "TEE-S", 1)
        .await
        .expect("add S");
    let cart = app
        .add_cart_line(&cart.id, "TEE-M", 2)
        .await
        .expect("add M");
    let small = cart.line_ids[0].clone();

    let cart = app
        .set_cart_line_quantity(&cart.id, &small, 5)
        .await
        .expect("change S");
    let quantities: Vec<(String, i64)> = cart
        .priced
        .lines
        .iter()
        .map(|l| (l.sku.clone(), l.quantity))
        .collect();
    assert_eq!(
        quantities,
        vec![("TEE-S".to_owned(), 5), ("TEE-M".to_owned(), 2)]
    );

    // Adding a SKU already in the cart raises that line only.
    let cart = app
        .add_cart_line(&cart.id, "TEE-M", 1)
        .await
        .expect("add M again");
    let quantities: Vec<i64> = cart.priced.lines.iter().map(|l| l.quantity).collect();
    assert_eq!(quantities, vec![5, 3]);
    assert_eq!(cart.priced.total.amount_minor(), 8 * 1500);

    let cart = app
        .remove_cart_line(&cart.id, &small)
        .await
        .expect("remove S");
    assert_eq!(cart.priced.lines.len(), 1);
    assert_eq!(cart.priced.lines[0].sku, "TEE-M");
}
both_backends!(risk_u1_changing_one_line_leaves_other_lines_of_the_product_alone);

async fn risk_s6_cart_line_count_and_quantity_are_bounded(db: TestDb) {
    let app = app(&db);
    let variants = (0..CART_LINES_MAX)
        .map(|i| variant(&format!("SKU-{i}"), 100, "usd"))
        .collect();
    product(&app, "Many", variants).await;
    product(&app, "One more", vec![variant("EXTRA", 100, "usd")]).await;
    let cart = app.create_cart("usd").await.expect("cart");
    for i in 0..CART_LINES_MAX {
        app.add_cart_line(&cart.id, &format!("SKU-{i}"), 1)
            .await
            .expect("within the bound");
    }
    let refused = app.add_cart_line(&cart.id, "EXTRA", 1).await;
    assert!(
        matches!(refused, Err(AppError::InvalidRequest { .. })),
        "{refused:?}"
    );
    assert_eq!(
        app.cart_view(&cart.id)
            .await
            .expect("cart")
            .priced
            .lines
            .len(),
        CART_LINES_MAX
    );

    // Raising a line past the per-line maximum is refused and changes nothing.
    app.add_cart_line(&cart.id, "SKU-0", LINE_QUANTITY_MAX - 1)
        .await
        .expect("up to the max");
    let refused = app.add_cart_line(&cart.id, "SKU-0", 1).await;
    assert!(
        matches!(refused, Err(AppError::InvalidRequest { .. })),
        "{refused:?}"
    );
    let line = &app.cart_view(&cart.id).await.expect("cart").priced.lines[0];
    assert_eq!(line.quantity, LINE_QUANTITY_MAX);
}
both_backends!(risk_s6_cart_line_count_and_quantity_are_bounded);

async fn risk_s1_cart_prices_come_from_the_catalog(db: TestDb) {
    let app = app(&db);
    product(&app, "Mug", vec![variant("MUG", 1250, "eur")]).await;
    let cart = app.create_cart("eur").await.expect("cart");
    app.add_cart_line(&cart.id, "MUG", 2).await.expect("add");
    app.update_variant("MUG", Some(1300), None)
        .await
        .expect("reprice");
    let cart = app.cart_view(&cart.id).await.expect("cart");
    assert_eq!(
        cart.priced.total.amount_minor(),
        2600,
        "carts follow the current catalog price"
    );

    // A variant in another currency, or one no longer for sale, cannot be added.
    product(&app, "Yen mug", vec![variant("MUG-JPY", 1300, "jpy")]).await;
    assert!(app.add_cart_line(&cart.id, "MUG-JPY", 1).await.is_err());
    app.update_variant("MUG", None, Some(false))
        .await
        .expect("retire");
    assert!(app.add_cart_line(&cart.id, "MUG", 1).await.is_err());
}
both_backends!(risk_s1_cart_prices_come_from_the_catalog);

async fn catalog_refuses_duplicate_skus_and_writes_nothing(db: TestDb) {
    let app = app(&db);
    product(&app, "First", vec![variant("DUP", 100, "usd")]).await;
    let refused = app
        .create_product(NewProduct {
            seller_id: None,
            name: "Second".to_owned(),
            variants: vec![variant("NEW", 100, "usd"), variant("DUP", 100, "usd")],
        })
        .await;
    assert!(
        matches!(refused, Err(AppError::InvalidRequest { .. })),
        "{refused:?}"
    );
    assert!(
        matches!(app.inventory("NEW").await, Err(AppError::NotFound { .. })),
        "nothing half-written"
    );
}
both_backends!(catalog_refuses_duplicate_skus_and_writes_nothing);

async fn stock_levels_per_location(db: TestDb) {
    let app = app(&db);
    product(&app, "Lamp", vec![variant("LAMP", 4000, "gbp")]).await;
    let levels = app
        .set_on_hand("LAMP", None, 7)
        .await
        .expect("default location");
    assert_eq!(levels.len(), 1);
    assert_eq!(
        (levels[0].location.as_str(), levels[0].stock.available()),
        ("default", 7)
    );
    let levels = app
        .set_on_hand("LAMP", Some("berlin"), 3)
        .await
        .expect("second location");
    let locations: Vec<&str> = levels.iter().map(|l| l.location.as_str()).collect();
    assert_eq!(locations, vec!["berlin", "default"]);
    assert!(app.set_on_hand("LAMP", None, -1).await.is_err());
    assert!(matches!(
        app.set_on_hand("NOPE", None, 1).await,
        Err(AppError::NotFound { .. })
    ));
}
both_backends!(stock_levels_per_location);

async fn database_refuses_oversold_stock_even_without_the_code(db: TestDb) {
    let app = app(&db);
    product(&app, "Pen", vec![variant("PEN", 100, "usd")]).await;
    app.set_on_hand("PEN", None, 2).await.expect("stock");
    // Bypass every check in the code: the CHECK constraint alone must refuse this.
    let oversell = sqlx::query("UPDATE inventory_levels SET reserved = 3 WHERE sku = 'PEN'")
        .execute(&sqlx::AnyPool::connect(&db.url).await.expect("second pool"))
        .await;
    assert!(
        oversell.is_err(),
        "reserved + committed > on_hand must violate a constraint"
    );
}
both_backends!(database_refuses_oversold_stock_even_without_the_code);

async fn readiness_reports_current_schema(db: TestDb) {
    assert!(app(&db).ready().await);
}
both_backends!(readiness_reports_current_schema);
