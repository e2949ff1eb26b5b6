//! Carts and their lines. Every change first "touches" the cart row: on PostgreSQL that takes
//! the row lock, so a line change and a checkout of the same cart are serialized and a checkout
//! never prices a cart that is changing under it.

use async_trait::async_trait;
use kassa_app::ports::{Cart, CartLine, CartRefusal, CartStore, StoreResult};
use kassa_domain::limits::{CART_LINES_MAX, LINE_QUANTITY_MAX};
use kassa_domain::{Currency, Money};
use sqlx::{AnyConnection, Row};

use crate::catalog::currency_of;
use crate::db::{SqlStore, flag, unavailable};

#[async_trait]
impl CartStore for SqlStore {
    async fn create_cart(&self, id: &str, currency: Currency, now: i64) -> StoreResult<()> {
        self.lone_execute(
            sqlx::query(
                "INSERT INTO carts (id, currency, created_at, updated_at) VALUES ($1, $2, $3, $3)",
            )
            .bind(id)
            .bind(currency.code())
            .bind(now),
        )
        .await?;
        Ok(())
    }

    async fn cart(&self, id: &str) -> StoreResult<Option<Cart>> {
        let mut unit = self.read().await?;
        let cart = cart_in(&mut unit, id).await?;
        unit.commit().await?;
        Ok(cart)
    }

    async fn add_cart_line(
        &self,
        cart_id: &str,
        new_line_id: &str,
        sku: &str,
        quantity: i64,
        now: i64,
    ) -> StoreResult<Result<(), CartRefusal>> {
        let mut tx = self.begin().await?;
        if let Err(refusal) = lock_open_cart(&mut tx, cart_id, now).await? {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        let raised = sqlx::query(
            "UPDATE cart_lines SET quantity = quantity + $3 WHERE cart_id = $1 AND sku = $2 AND quantity + $3 <= $4",
        )
        .bind(cart_id)
        .bind(sku)
        .bind(quantity)
        .bind(LINE_QUANTITY_MAX)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if raised.rows_affected() == 0 {
            let (lines, has_sku): (i64, i64) = sqlx::query_as(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN sku = $2 THEN 1 ELSE 0 END), 0) FROM cart_lines WHERE cart_id = $1",
            )
            .bind(cart_id)
            .bind(sku)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
            if has_sku > 0 {
                tx.rollback().await?;
                return Ok(Err(CartRefusal::QuantityTooLarge));
            }
            if lines >= CART_LINES_MAX as i64 {
                tx.rollback().await?;
                return Ok(Err(CartRefusal::TooManyLines));
            }
            sqlx::query(
                "INSERT INTO cart_lines (id, cart_id, sku, quantity, position, created_at)
                 VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(position), 0) + 1 FROM cart_lines WHERE cart_id = $2), $5)",
            )
            .bind(new_line_id)
            .bind(cart_id)
            .bind(sku)
            .bind(quantity)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn set_cart_line_quantity(
        &self,
        cart_id: &str,
        line_id: &str,
        quantity: i64,
        now: i64,
    ) -> StoreResult<Result<(), CartRefusal>> {
        let mut tx = self.begin().await?;
        if let Err(refusal) = lock_open_cart(&mut tx, cart_id, now).await? {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        // Keyed by line id and cart id: only this line of this cart changes (risk U1).
        let changed =
            sqlx::query("UPDATE cart_lines SET quantity = $3 WHERE cart_id = $1 AND id = $2")
                .bind(cart_id)
                .bind(line_id)
                .bind(quantity)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        if changed.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(Err(CartRefusal::LineNotFound));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    async fn remove_cart_line(
        &self,
        cart_id: &str,
        line_id: &str,
        now: i64,
    ) -> StoreResult<Result<(), CartRefusal>> {
        let mut tx = self.begin().await?;
        if let Err(refusal) = lock_open_cart(&mut tx, cart_id, now).await? {
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        let removed = sqlx::query("DELETE FROM cart_lines WHERE cart_id = $1 AND id = $2")
            .bind(cart_id)
            .bind(line_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if removed.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(Err(CartRefusal::LineNotFound));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }
}

/// Touches the cart row (taking its lock on PostgreSQL) and refuses a missing or checked-out cart.
pub(crate) async fn lock_open_cart(
    conn: &mut AnyConnection,
    cart_id: &str,
    now: i64,
) -> StoreResult<Result<(), CartRefusal>> {
    let touched = sqlx::query("UPDATE carts SET updated_at = $2 WHERE id = $1")
        .bind(cart_id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    if touched.rows_affected() != 1 {
        return Ok(Err(CartRefusal::CartNotFound));
    }
    match order_of_cart(conn, cart_id).await? {
        Some(order_id) => Ok(Err(CartRefusal::CheckedOut { order_id })),
        None => Ok(Ok(())),
    }
}

async fn order_of_cart(conn: &mut AnyConnection, cart_id: &str) -> StoreResult<Option<String>> {
    sqlx::query_scalar("SELECT id FROM orders WHERE cart_id = $1")
        .bind(cart_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)
}

pub(crate) async fn cart_in(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<Cart>> {
    let currency: Option<String> = sqlx::query_scalar("SELECT currency FROM carts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    let Some(currency) = currency else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT l.id, l.sku, l.quantity, v.unit_amount, v.currency, v.active
         FROM cart_lines l JOIN variants v ON v.sku = l.sku
         WHERE l.cart_id = $1 ORDER BY l.position",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let line_currency: String = row.try_get("currency").map_err(unavailable)?;
        lines.push(CartLine {
            id: row.try_get("id").map_err(unavailable)?,
            sku: row.try_get("sku").map_err(unavailable)?,
            quantity: row.try_get("quantity").map_err(unavailable)?,
            unit_price: Money::new(
                row.try_get("unit_amount").map_err(unavailable)?,
                currency_of(&line_currency)?,
            ),
            active: flag(row.try_get("active").map_err(unavailable)?),
        });
    }
    Ok(Some(Cart {
        id: id.to_owned(),
        currency: currency_of(&currency)?,
        lines,
        order_id: order_of_cart(conn, id).await?,
    }))
}
