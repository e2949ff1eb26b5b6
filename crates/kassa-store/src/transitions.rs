//! Compare-and-set status writes. The domain decides the next status; these functions write it
//! only if the row still has the status the decision was based on, check that exactly one row
//! changed, and append the audit record in the same transaction.

use kassa_app::ports::{Actor, StoreError, StoreResult};
use kassa_domain::order::{OrderEvent, OrderStatus};
use kassa_domain::payment::{PaymentEvent, PaymentStatus};
use kassa_domain::reservation::{ReservationEvent, ReservationStatus};
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::db::unavailable;

/// Applies `event` to the order if the state machine allows it. `Ok(None)`: refused, nothing
/// written (the caller decides whether that is fine, e.g. a duplicate event).
pub(crate) async fn order(
    conn: &mut AnyConnection,
    order_id: &str,
    event: OrderEvent,
    actor: &Actor,
    now: i64,
) -> StoreResult<Option<OrderStatus>> {
    let current: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
    let from = OrderStatus::parse(&current)
        .ok_or_else(|| StoreError::Corrupt(format!("order status {current:?}")))?;
    let Ok(to) = from.apply(event) else {
        return Ok(None);
    };
    let changed = sqlx::query(
        "UPDATE orders SET status = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(order_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if changed.rows_affected() != 1 {
        return Ok(None);
    }
    let change = Change {
        entity_type: "order",
        entity_id: order_id,
        action: "status_changed",
        before: Some(from.as_str()),
        after: Some(to.as_str()),
        detail: Some(&format!("{event:?}")),
    };
    audit::record(conn, change, actor, now).await?;
    Ok(Some(to))
}

/// Applies `event` to the payment if allowed; same contract as [`order`].
pub(crate) async fn payment(
    conn: &mut AnyConnection,
    payment_id: &str,
    event: PaymentEvent,
    actor: &Actor,
    now: i64,
) -> StoreResult<Option<PaymentStatus>> {
    let current: String = sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
        .bind(payment_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(unavailable)?;
    let from = PaymentStatus::parse(&current)
        .ok_or_else(|| StoreError::Corrupt(format!("payment status {current:?}")))?;
    let Ok(to) = from.apply(event) else {
        return Ok(None);
    };
    let changed = sqlx::query(
        "UPDATE payments SET status = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(payment_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if changed.rows_affected() != 1 {
        return Ok(None);
    }
    let change = Change {
        entity_type: "payment",
        entity_id: payment_id,
        action: "status_changed",
        before: Some(from.as_str()),
        after: Some(to.as_str()),
        detail: Some(&format!("{event:?}")),
    };
    audit::record(conn, change, actor, now).await?;
    Ok(Some(to))
}

/// Releases (or commits) every held reservation of an order, moving the stock counters with
/// each one. Each reservation moves once: the status CAS makes a second call a no-op.
pub(crate) async fn settle_reservations(
    conn: &mut AnyConnection,
    order_id: &str,
    event: ReservationEvent,
    actor: &Actor,
    now: i64,
) -> StoreResult<u64> {
    let to = ReservationStatus::Held
        .apply(event)
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let held = sqlx::query("SELECT id, sku, location, quantity FROM reservations WHERE order_id = $1 AND status = 'held' ORDER BY sku")
        .bind(order_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(unavailable)?;
    let mut settled = 0;
    for row in held {
        let id: String = row.try_get("id").map_err(unavailable)?;
        let sku: String = row.try_get("sku").map_err(unavailable)?;
        let location: String = row.try_get("location").map_err(unavailable)?;
        let quantity: i64 = row.try_get("quantity").map_err(unavailable)?;
        let changed = sqlx::query("UPDATE reservations SET status = $2, updated_at = $3 WHERE id = $1 AND status = 'held'")
            .bind(&id)
            .bind(to.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        if changed.rows_affected() != 1 {
            continue;
        }
        let stock_sql = match event {
            ReservationEvent::Release => {
                "UPDATE inventory_levels SET reserved = reserved - $3, updated_at = $4 WHERE sku = $1 AND location = $2"
            }
            ReservationEvent::Commit => {
                "UPDATE inventory_levels SET reserved = reserved - $3, committed = committed + $3, updated_at = $4
                 WHERE sku = $1 AND location = $2"
            }
        };
        sqlx::query(stock_sql)
            .bind(&sku)
            .bind(&location)
            .bind(quantity)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        let detail = format!("{quantity} × {sku} at {location}");
        let change = Change {
            entity_type: "reservation",
            entity_id: &id,
            action: "status_changed",
            before: Some("held"),
            after: Some(to.as_str()),
            detail: Some(&detail),
        };
        audit::record(conn, change, actor, now).await?;
        settled += 1;
    }
    Ok(settled)
}
