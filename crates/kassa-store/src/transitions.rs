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
    let row = StatusRow {
        table: Table::Orders,
        id: order_id,
    };
    let Some(from) = OrderStatus::parse(&row.status(conn).await?) else {
        return Err(StoreError::Corrupt(format!(
            "order {order_id} has an unknown status"
        )));
    };
    let Ok(to) = from.apply(event) else {
        return Ok(None);
    };
    let moved = row
        .compare_and_set(
            conn,
            from.as_str(),
            to.as_str(),
            &format!("{event:?}"),
            actor,
            now,
        )
        .await?;
    Ok(moved.then_some(to))
}

/// Applies `event` to the payment if allowed; same contract as [`order`].
pub(crate) async fn payment(
    conn: &mut AnyConnection,
    payment_id: &str,
    event: PaymentEvent,
    actor: &Actor,
    now: i64,
) -> StoreResult<Option<PaymentStatus>> {
    let row = StatusRow {
        table: Table::Payments,
        id: payment_id,
    };
    let Some(from) = PaymentStatus::parse(&row.status(conn).await?) else {
        return Err(StoreError::Corrupt(format!(
            "payment {payment_id} has an unknown status"
        )));
    };
    let Ok(to) = from.apply(event) else {
        return Ok(None);
    };
    let moved = row
        .compare_and_set(
            conn,
            from.as_str(),
            to.as_str(),
            &format!("{event:?}"),
            actor,
            now,
        )
        .await?;
    Ok(moved.then_some(to))
}

/// The tables whose rows carry a versioned status.
#[derive(Clone, Copy)]
enum Table {
    Orders,
    Payments,
}

/// One row with a status column: read it, or move it with a compare-and-set plus audit record.
struct StatusRow<'a> {
    table: Table,
    id: &'a str,
}

impl StatusRow<'_> {
    fn entity_type(&self) -> &'static str {
        match self.table {
            Table::Orders => "order",
            Table::Payments => "payment",
        }
    }

    async fn status(&self, conn: &mut AnyConnection) -> StoreResult<String> {
        let sql = match self.table {
            Table::Orders => "SELECT status FROM orders WHERE id = $1",
            Table::Payments => "SELECT status FROM payments WHERE id = $1",
        };
        sqlx::query_scalar(sql)
            .bind(self.id)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)
    }

    /// Writes `to` only if the row still has `from`; true if exactly one row moved.
    async fn compare_and_set(
        &self,
        conn: &mut AnyConnection,
        from: &str,
        to: &str,
        cause: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<bool> {
        let sql = match self.table {
            Table::Orders => {
                "UPDATE orders SET status = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND status = $2"
            }
            Table::Payments => {
                "UPDATE payments SET status = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND status = $2"
            }
        };
        let changed = sqlx::query(sql)
            .bind(self.id)
            .bind(from)
            .bind(to)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        if changed.rows_affected() != 1 {
            return Ok(false);
        }
        let change = Change {
            entity_type: self.entity_type(),
            entity_id: self.id,
            action: "status_changed",
            before: Some(from),
            after: Some(to),
            detail: Some(cause),
        };
        audit::record(conn, change, actor, now).await?;
        Ok(true)
    }
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
