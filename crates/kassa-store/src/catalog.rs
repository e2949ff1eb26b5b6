//! Products, variants and stock levels.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kassa_app::catalog::DEFAULT_LOCATION;
use kassa_app::ports::{
    CatalogStore, CreateProductOutcome, InventoryLevel, Product, SetOnHandOutcome, StockLevel,
    StoreError, StoreResult, Variant,
};
use kassa_domain::{Currency, Money};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::db::{SqlStore, flag, flag_value, unavailable};

/// Fault point: creating a product fails after its row is written, before its variants.
pub const FAULT_AFTER_PRODUCT_ROW: &str = "catalog.after_product_row";

#[async_trait]
impl CatalogStore for SqlStore {
    async fn create_product(
        &self,
        product: &Product,
        now: i64,
    ) -> StoreResult<CreateProductOutcome> {
        let mut tx = self.begin().await?;
        if let Some(seller_id) = &product.seller_id {
            let known: Option<String> = sqlx::query_scalar("SELECT id FROM sellers WHERE id = $1")
                .bind(seller_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            if known.is_none() {
                tx.rollback().await?;
                return Ok(CreateProductOutcome::SellerMissing);
            }
        }
        sqlx::query(
            "INSERT INTO products (id, name, created_at, seller_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(&product.id)
        .bind(&product.name)
        .bind(now)
        .bind(product.seller_id.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        self.faults().check(FAULT_AFTER_PRODUCT_ROW)?;
        for variant in &product.variants {
            let inserted = sqlx::query(
                "INSERT INTO variants (sku, product_id, unit_amount, currency, attributes, active, created_at, updated_at, credits)
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $6, $7) ON CONFLICT (sku) DO NOTHING",
            )
            .bind(&variant.sku)
            .bind(&product.id)
            .bind(variant.unit_price.amount_minor())
            .bind(variant.unit_price.currency().code())
            .bind(attributes_json(&variant.attributes))
            .bind(now)
            .bind(variant.credits)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            if inserted.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(CreateProductOutcome::SkuTaken(variant.sku.clone()));
            }
            sqlx::query(
                "INSERT INTO inventory_levels (sku, location, on_hand, reserved, committed, updated_at)
                 VALUES ($1, $2, 0, 0, 0, $3)",
            )
            .bind(&variant.sku)
            .bind(DEFAULT_LOCATION)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await?;
        Ok(CreateProductOutcome::Created(product.clone()))
    }

    async fn variant(&self, sku: &str) -> StoreResult<Option<Variant>> {
        let mut unit = self.read().await?;
        let variant = variant_in(&mut unit, sku).await?;
        unit.commit().await?;
        Ok(variant)
    }

    async fn update_variant(
        &self,
        sku: &str,
        unit_amount_minor: Option<i64>,
        active: Option<bool>,
        now: i64,
    ) -> StoreResult<Option<Variant>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE variants SET unit_amount = COALESCE($2, unit_amount), active = COALESCE($3, active),
             updated_at = $4 WHERE sku = $1",
        )
        .bind(sku)
        .bind(unit_amount_minor)
        .bind(active.map(flag_value))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let variant = variant_in(&mut tx, sku).await?;
        tx.commit().await?;
        Ok(variant)
    }

    async fn set_on_hand(
        &self,
        sku: &str,
        location: &str,
        on_hand: i64,
        now: i64,
    ) -> StoreResult<SetOnHandOutcome> {
        let mut tx = self.begin().await?;
        if variant_in(&mut tx, sku).await?.is_none() {
            tx.rollback().await?;
            return Ok(SetOnHandOutcome::UnknownSku);
        }
        // Conditional upsert: the new figure may not fall below what is reserved or committed.
        let changed = sqlx::query(
            "INSERT INTO inventory_levels (sku, location, on_hand, reserved, committed, updated_at)
             VALUES ($1, $2, $3, 0, 0, $4)
             ON CONFLICT (sku, location) DO UPDATE SET on_hand = excluded.on_hand, updated_at = excluded.updated_at
             WHERE inventory_levels.reserved + inventory_levels.committed <= excluded.on_hand",
        )
        .bind(sku)
        .bind(location)
        .bind(on_hand)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let levels = levels_in(&mut tx, sku).await?;
        tx.commit().await?;
        if changed.rows_affected() == 1 {
            return Ok(SetOnHandOutcome::Set(levels));
        }
        let allocated = levels
            .iter()
            .find(|level| level.location == location)
            .map_or(0, |level| level.stock.reserved + level.stock.committed);
        Ok(SetOnHandOutcome::BelowAllocated { allocated })
    }

    async fn inventory(&self, sku: &str) -> StoreResult<Option<Vec<InventoryLevel>>> {
        let mut unit = self.read().await?;
        let levels = match variant_in(&mut unit, sku).await? {
            Some(_) => Some(levels_in(&mut unit, sku).await?),
            None => None,
        };
        unit.commit().await?;
        Ok(levels)
    }
}

pub(crate) async fn variant_in(
    conn: &mut AnyConnection,
    sku: &str,
) -> StoreResult<Option<Variant>> {
    let row = sqlx::query("SELECT sku, product_id, unit_amount, currency, attributes, active, credits FROM variants WHERE sku = $1")
        .bind(sku)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    row.map(|row| variant_from_row(&row)).transpose()
}

async fn levels_in(conn: &mut AnyConnection, sku: &str) -> StoreResult<Vec<InventoryLevel>> {
    let rows = sqlx::query(
        "SELECT location, on_hand, reserved, committed FROM inventory_levels WHERE sku = $1 ORDER BY location",
    )
    .bind(sku)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            Ok(InventoryLevel {
                location: row.try_get("location").map_err(unavailable)?,
                stock: StockLevel {
                    on_hand: row.try_get("on_hand").map_err(unavailable)?,
                    reserved: row.try_get("reserved").map_err(unavailable)?,
                    committed: row.try_get("committed").map_err(unavailable)?,
                },
            })
        })
        .collect()
}

fn variant_from_row(row: &AnyRow) -> StoreResult<Variant> {
    let currency: String = row.try_get("currency").map_err(unavailable)?;
    let currency = currency_of(&currency)?;
    let attributes: String = row.try_get("attributes").map_err(unavailable)?;
    Ok(Variant {
        sku: row.try_get("sku").map_err(unavailable)?,
        product_id: row.try_get("product_id").map_err(unavailable)?,
        unit_price: Money::new(row.try_get("unit_amount").map_err(unavailable)?, currency),
        attributes: serde_json::from_str(&attributes)
            .map_err(|error| StoreError::Corrupt(format!("variant attributes: {error}")))?,
        active: flag(row.try_get("active").map_err(unavailable)?),
        credits: row.try_get("credits").map_err(unavailable)?,
    })
}

pub(crate) fn currency_of(code: &str) -> StoreResult<Currency> {
    Currency::parse(code)
        .map_err(|_| StoreError::Corrupt(format!("unknown currency {code:?} in the database")))
}

fn attributes_json(attributes: &BTreeMap<String, String>) -> String {
    serde_json::to_string(attributes).expect("a map of strings always serializes")
}
