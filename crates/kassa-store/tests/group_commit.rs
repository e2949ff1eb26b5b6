//! Group commit (issue 12), on SQLite and on PostgreSQL (with group commit switched on there):
//! many requests' units of work share one transaction and one commit, each in a savepoint of
//! its own. A unit that fails or is refused inside a batch leaves nothing behind, and the units
//! before and after it in the same batch commit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kassa_app::catalog::{NewProduct, NewVariant};
use kassa_store::{CommitMode, SqlStore};
use kassa_testkit::{TestDb, both_backends};

const PRODUCTS: usize = 40;
/// The product whose creation hits the armed fault after writing its row.
const FAULT_AFTER_PRODUCT_ROW: &str = "catalog.after_product_row";
const TAKEN_SKU: &str = "TAKEN";

fn new_product(name: &str, skus: &[&str]) -> NewProduct {
    NewProduct {
        seller_id: None,
        name: name.to_owned(),
        variants: skus
            .iter()
            .map(|sku| NewVariant {
                sku: (*sku).to_owned(),
                unit_amount_minor: 1_000,
                currency: "eur".to_owned(),
                attributes: BTreeMap::new(),
                credits: 0,
            })
            .collect(),
    }
}

/// The names of the products in the database, read through a connection of its own: what is
/// there is what was committed.
async fn committed_product_names(url: &str) -> Vec<String> {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("a second connection opens");
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM products ORDER BY name")
        .fetch_all(&pool)
        .await
        .expect("products are readable");
    let variants: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM variants")
        .fetch_one(&pool)
        .await
        .expect("variants are readable");
    let levels: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inventory_levels")
        .fetch_one(&pool)
        .await
        .expect("stock levels are readable");
    assert_eq!(
        (variants, levels),
        (i64::try_from(names.len()).unwrap_or(-1) * 2, variants),
        "every committed product has its two variants and their stock levels, nothing else"
    );
    pool.close().await;
    names
}

async fn group_commit_a_failing_unit_rolls_back_alone_and_its_batch_commits(mut db: TestDb) {
    db.store = SqlStore::open_with(
        &db.url,
        Some(CommitMode::Grouped {
            wait: std::time::Duration::ZERO,
        }),
    )
    .await
    .expect("the store opens with group commit");
    let app = kassa_testkit::app(&db);
    app.create_product(new_product("existing", &[TAKEN_SKU, "EXISTING-2"]))
        .await
        .expect("the first product is created");
    let before = db.store.commit_stats().expect("group commit is on");

    // The test takes the writer, so every creation below queues behind it and all of them run
    // in the one batch that begins when it lets go.
    let held = db
        .store
        .hold_writer()
        .await
        .expect("group commit is on")
        .expect("the writer is free");
    db.store.faults().arm(FAULT_AFTER_PRODUCT_ROW);
    let mut creations = tokio::task::JoinSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..PRODUCTS {
        let app = app.clone();
        // One of them asks for a SKU that exists: refused after writing its row and first
        // variant, it rolls back on purpose. Another meets the armed fault and fails.
        let second_sku = if n == 7 {
            TAKEN_SKU.to_owned()
        } else {
            format!("P{n:02}-B")
        };
        creations.spawn(async move {
            let name = format!("p{n:02}");
            let product = new_product(&name, &[&format!("P{n:02}-A"), &second_sku]);
            (name, app.create_product(product).await)
        });
        // One at a time, so they queue (and will run) in this order: p00 meets the fault.
        while db.store.commit_stats().map(|stats| stats.queued) != Some(n + 1) {
            assert!(Instant::now() < deadline, "creation {n} never queued");
            tokio::task::yield_now().await;
        }
    }
    held.release().await.expect("the batch commits");

    let mut created = vec!["existing".to_owned()];
    let mut refused = Vec::new();
    let mut failed = Vec::new();
    while let Some(joined) = creations.join_next().await {
        let (name, result) = joined.expect("no creation panics");
        match result {
            Ok(_) => created.push(name),
            Err(kassa_app::AppError::InvalidRequest { .. }) => refused.push(name),
            Err(_) => failed.push(name),
        }
    }
    assert_eq!(
        refused,
        ["p07"],
        "the product with the taken SKU is refused"
    );
    assert_eq!(failed, ["p00"], "the armed fault fails the first creation");
    assert_eq!(created.len(), PRODUCTS - 1);
    let after = db.store.commit_stats().expect("group commit is on");
    assert_eq!(
        (after.batches - before.batches, after.units - before.units),
        // The held unit, the 38 creations and the refusal; the failed creation is not counted.
        (1, PRODUCTS as u64),
        "everything queued shared one batch"
    );

    created.sort();
    assert_eq!(
        committed_product_names(&db.url).await,
        created,
        "the batch committed every creation but the refused and the failed one, which left nothing"
    );
    db.store.close().await;
}
both_backends!(group_commit_a_failing_unit_rolls_back_alone_and_its_batch_commits);
