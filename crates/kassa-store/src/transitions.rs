//! Compare-and-set status writes, the only place a status column is written. The domain decides
//! the next status; these functions write it only if the row still has the status the decision
//! was based on, and append the audit record in the same transaction.
//!
//! A status is always read with the row locked (a no-op `UPDATE … RETURNING`, which locks on
//! PostgreSQL and takes the write lock on SQLite), so between the read and the write nobody else
//! can move it: a compare-and-set that does not take is a bug, reported as
//! [`StoreError::ImpossibleMove`], never skipped.

use kassa_app::ports::{Actor, StoreError, StoreResult};
use kassa_domain::order::{OrderEvent, OrderStatus};
use kassa_domain::payment::{PaymentEvent, PaymentStatus};
use kassa_domain::plan::Move;
use kassa_domain::refund::RefundStatus;
use kassa_domain::reservation::{ReservationEvent, ReservationStatus};
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::db::unavailable;

/// How an event-driven status write ended. "The machine refused" is an answer the caller must
/// act on deliberately (ignore a stale event, refuse a command, flag an order).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome<S> {
    Moved(S),
    /// The state machine does not allow the event from the current status (given here).
    Refused(S),
}

/// Locks the order row and returns its status. Every plan starts here, so two plans for one
/// order never interleave.
pub(crate) async fn lock_order(
    conn: &mut AnyConnection,
    order_id: &str,
) -> StoreResult<OrderStatus> {
    let status = StatusRow::order(order_id).lock(conn).await?;
    OrderStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("order {order_id} has status {status:?}")))
}

/// Applies `event` to the order if its machine allows it.
pub(crate) async fn order(
    conn: &mut AnyConnection,
    order_id: &str,
    event: OrderEvent,
    actor: &Actor,
    now: i64,
) -> StoreResult<Outcome<OrderStatus>> {
    let from = lock_order(conn, order_id).await?;
    let Ok(to) = from.apply(event) else {
        return Ok(Outcome::Refused(from));
    };
    move_order(conn, order_id, event, Move { from, to }, actor, now).await?;
    Ok(Outcome::Moved(to))
}

/// Applies `event` to the payment if its machine allows it.
pub(crate) async fn payment(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_id: &str,
    event: PaymentEvent,
    actor: &Actor,
    now: i64,
) -> StoreResult<Outcome<PaymentStatus>> {
    let row = StatusRow::payment(order_id, payment_id);
    let status = row.lock(conn).await?;
    let from = PaymentStatus::parse(&status).ok_or_else(|| {
        StoreError::Corrupt(format!("payment {payment_id} has status {status:?}"))
    })?;
    let Ok(to) = from.apply(event) else {
        return Ok(Outcome::Refused(from));
    };
    row.compare_and_set(
        conn,
        from.as_str(),
        to.as_str(),
        &format!("{event:?}"),
        actor,
        now,
    )
    .await?;
    Ok(Outcome::Moved(to))
}

/// Makes a move a plan decided (with the order locked); it must take.
pub(crate) async fn move_order(
    conn: &mut AnyConnection,
    order_id: &str,
    event: OrderEvent,
    step: Move<OrderStatus>,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let cause = format!("{event:?}");
    StatusRow::order(order_id)
        .compare_and_set(
            conn,
            step.from.as_str(),
            step.to.as_str(),
            &cause,
            actor,
            now,
        )
        .await
}

/// Makes a payment move a plan decided; it must take.
pub(crate) async fn move_payment(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_id: &str,
    step: Move<PaymentStatus>,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let cause = format!("Observed({})", step.to);
    StatusRow::payment(order_id, payment_id)
        .compare_and_set(
            conn,
            step.from.as_str(),
            step.to.as_str(),
            &cause,
            actor,
            now,
        )
        .await
}

/// The tables whose rows carry a versioned status.
#[derive(Clone, Copy)]
enum Table {
    Orders,
    Payments,
}

/// One row with a status column, and the order it belongs to (for reporting).
struct StatusRow<'a> {
    table: Table,
    id: &'a str,
    order_id: &'a str,
}

impl<'a> StatusRow<'a> {
    fn order(order_id: &'a str) -> StatusRow<'a> {
        StatusRow {
            table: Table::Orders,
            id: order_id,
            order_id,
        }
    }

    fn payment(order_id: &'a str, payment_id: &'a str) -> StatusRow<'a> {
        StatusRow {
            table: Table::Payments,
            id: payment_id,
            order_id,
        }
    }

    fn entity_type(&self) -> &'static str {
        match self.table {
            Table::Orders => "order",
            Table::Payments => "payment",
        }
    }

    /// The row's status, with the row locked for the rest of the transaction.
    async fn lock(&self, conn: &mut AnyConnection) -> StoreResult<String> {
        let sql = match self.table {
            Table::Orders => "UPDATE orders SET version = version WHERE id = $1 RETURNING status",
            Table::Payments => {
                "UPDATE payments SET version = version WHERE id = $1 RETURNING status"
            }
        };
        sqlx::query_scalar(sql)
            .bind(self.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("{} {} is missing", self.entity_type(), self.id))
            })
    }

    /// Writes `to` if the row still has `from`; anything else is an impossible move.
    async fn compare_and_set(
        &self,
        conn: &mut AnyConnection,
        from: &str,
        to: &str,
        cause: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
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
            return Err(StoreError::ImpossibleMove {
                order_id: self.order_id.to_owned(),
                detail: format!(
                    "{} {} was not {from} when moving to {to}",
                    self.entity_type(),
                    self.id
                ),
            });
        }
        let change = Change {
            entity_type: self.entity_type(),
            entity_id: self.id,
            action: "status_changed",
            before: Some(from),
            after: Some(to),
            detail: Some(cause),
        };
        audit::record(conn, change, actor, now).await
    }
}

/// One reservation of an order.
struct Reservation {
    id: String,
    status: ReservationStatus,
    sku: String,
    location: String,
    quantity: i64,
}

async fn reservations_of(
    conn: &mut AnyConnection,
    order_id: &str,
) -> StoreResult<Vec<Reservation>> {
    let rows = sqlx::query(
        "SELECT id, status, sku, location, quantity FROM reservations WHERE order_id = $1 ORDER BY sku, id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status").map_err(unavailable)?;
            Ok(Reservation {
                id: row.try_get("id").map_err(unavailable)?,
                status: ReservationStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("reservation status {status:?}")))?,
                sku: row.try_get("sku").map_err(unavailable)?,
                location: row.try_get("location").map_err(unavailable)?,
                quantity: row.try_get("quantity").map_err(unavailable)?,
            })
        })
        .collect()
}

/// Releases every held reservation of an order, giving its stock back. Each moves once.
pub(crate) async fn release_reservations(
    conn: &mut AnyConnection,
    order_id: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    for reservation in reservations_of(conn, order_id).await? {
        if reservation.status == ReservationStatus::Held {
            settle(
                conn,
                order_id,
                &reservation,
                ReservationEvent::Release,
                actor,
                now,
            )
            .await?;
        }
    }
    Ok(())
}

/// Gives back the stock of every committed reservation of an order (a refund with restock).
/// Each reservation returns once: the machine has no second `Return`.
pub(crate) async fn return_stock(
    conn: &mut AnyConnection,
    order_id: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<u64> {
    let mut returned = 0;
    for reservation in reservations_of(conn, order_id).await? {
        if reservation.status == ReservationStatus::Committed {
            settle(
                conn,
                order_id,
                &reservation,
                ReservationEvent::Return,
                actor,
                now,
            )
            .await?;
            returned += 1;
        }
    }
    Ok(returned)
}

/// Commits every reservation of an order: held ones become sales, released ones take their
/// stock again. All or nothing: if any released stock is gone, nothing moves and the answer is
/// `false` (the caller flags the order, risk G2).
pub(crate) async fn commit_reservations(
    conn: &mut AnyConnection,
    order_id: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<bool> {
    let reservations = reservations_of(conn, order_id).await?;
    let released: Vec<&Reservation> = reservations
        .iter()
        .filter(|r| r.status == ReservationStatus::Released)
        .collect();
    for (taken, item) in released.iter().enumerate() {
        if !take_committed(conn, item, item.quantity, now).await? {
            for done in &released[..taken] {
                if !take_committed(conn, done, -done.quantity, now).await? {
                    return Err(StoreError::Corrupt(format!(
                        "giving back re-taken stock of {} failed",
                        done.sku
                    )));
                }
            }
            return Ok(false);
        }
    }
    for reservation in &reservations {
        let event = match reservation.status {
            ReservationStatus::Held => ReservationEvent::Commit,
            ReservationStatus::Released => ReservationEvent::CommitAfterRelease,
            ReservationStatus::Committed
            | ReservationStatus::Returned
            | ReservationStatus::Removed => {
                continue;
            }
        };
        settle(conn, order_id, reservation, event, actor, now).await?;
    }
    Ok(true)
}

/// Adds `delta` to `committed` if that leaves `available` at zero or more; true if it moved.
async fn take_committed(
    conn: &mut AnyConnection,
    item: &Reservation,
    delta: i64,
    now: i64,
) -> StoreResult<bool> {
    let moved = sqlx::query(
        "UPDATE inventory_levels SET committed = committed + $3, updated_at = $4
         WHERE sku = $1 AND location = $2 AND on_hand - reserved - committed >= $3",
    )
    .bind(&item.sku)
    .bind(&item.location)
    .bind(delta)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(moved.rows_affected() == 1)
}

/// Moves one reservation through its machine, with the stock counters it implies (a
/// `CommitAfterRelease` took its stock already in [`take_committed`]).
async fn settle(
    conn: &mut AnyConnection,
    order_id: &str,
    reservation: &Reservation,
    event: ReservationEvent,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let to = reservation
        .status
        .apply(event)
        .map_err(|refused| StoreError::ImpossibleMove {
            order_id: order_id.to_owned(),
            detail: format!("reservation {}: {refused}", reservation.id),
        })?;
    let changed = sqlx::query(
        "UPDATE reservations SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(&reservation.id)
    .bind(reservation.status.as_str())
    .bind(to.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if changed.rows_affected() != 1 {
        return Err(StoreError::ImpossibleMove {
            order_id: order_id.to_owned(),
            detail: format!(
                "reservation {} was not {}",
                reservation.id, reservation.status
            ),
        });
    }
    let stock_sql = match event {
        ReservationEvent::Release | ReservationEvent::Remove => Some(
            "UPDATE inventory_levels SET reserved = reserved - $3, updated_at = $4 WHERE sku = $1 AND location = $2",
        ),
        ReservationEvent::Commit => Some(
            "UPDATE inventory_levels SET reserved = reserved - $3, committed = committed + $3, updated_at = $4
             WHERE sku = $1 AND location = $2",
        ),
        ReservationEvent::Return => Some(
            "UPDATE inventory_levels SET committed = committed - $3, updated_at = $4 WHERE sku = $1 AND location = $2",
        ),
        ReservationEvent::CommitAfterRelease => None,
    };
    if let Some(sql) = stock_sql {
        sqlx::query(sql)
            .bind(&reservation.sku)
            .bind(&reservation.location)
            .bind(reservation.quantity)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
    }
    let detail = format!(
        "{} × {} at {}",
        reservation.quantity, reservation.sku, reservation.location
    );
    let change = Change {
        entity_type: "reservation",
        entity_id: &reservation.id,
        action: if event == ReservationEvent::CommitAfterRelease {
            "recommitted"
        } else {
            "status_changed"
        },
        before: Some(reservation.status.as_str()),
        after: Some(to.as_str()),
        detail: Some(&detail),
    };
    audit::record(conn, change, actor, now).await
}

/// Moves a refund from `from` to what its machine makes of the provider's report; `Refused`
/// when the report is stale (a `pending` after `succeeded`).
pub(crate) async fn refund(
    conn: &mut AnyConnection,
    order_id: &str,
    refund_id: &str,
    from: RefundStatus,
    reported: RefundStatus,
    actor: &Actor,
    now: i64,
) -> StoreResult<Outcome<RefundStatus>> {
    let Ok(to) = from.apply(reported) else {
        return Ok(Outcome::Refused(from));
    };
    let changed = sqlx::query(
        "UPDATE refunds SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(refund_id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if changed.rows_affected() != 1 {
        return Err(StoreError::ImpossibleMove {
            order_id: order_id.to_owned(),
            detail: format!("refund {refund_id} was not {from}"),
        });
    }
    let change = Change {
        entity_type: "refund",
        entity_id: refund_id,
        action: "status_changed",
        before: Some(from.as_str()),
        after: Some(to.as_str()),
        detail: None,
    };
    audit::record(conn, change, actor, now).await?;
    Ok(Outcome::Moved(to))
}

/// Gives back `by` units of an order's held reservation of `sku` (an order edit): the whole
/// reservation is released through its machine, a part shrinks it and the reserved count.
pub(crate) async fn shrink_reservation(
    conn: &mut AnyConnection,
    order_id: &str,
    sku: &str,
    by: i64,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let Some(reservation) = reservations_of(conn, order_id)
        .await?
        .into_iter()
        .find(|r| r.sku == sku && r.status == ReservationStatus::Held)
    else {
        return Err(StoreError::ImpossibleMove {
            order_id: order_id.to_owned(),
            detail: format!("no held reservation of {sku} to shrink"),
        });
    };
    if by >= reservation.quantity {
        // Removed, not released: a released reservation is taken again if the order is paid
        // after all, and this line is no longer part of the order.
        return settle(
            conn,
            order_id,
            &reservation,
            ReservationEvent::Remove,
            actor,
            now,
        )
        .await;
    }
    let shrunk = sqlx::query(
        "UPDATE reservations SET quantity = quantity - $2, updated_at = $3 WHERE id = $1 AND status = 'held' AND quantity > $2",
    )
    .bind(&reservation.id)
    .bind(by)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if shrunk.rows_affected() != 1 {
        return Err(StoreError::ImpossibleMove {
            order_id: order_id.to_owned(),
            detail: format!("reservation {} did not shrink", reservation.id),
        });
    }
    sqlx::query(
        "UPDATE inventory_levels SET reserved = reserved - $3, updated_at = $4 WHERE sku = $1 AND location = $2",
    )
    .bind(&reservation.sku)
    .bind(&reservation.location)
    .bind(by)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let detail = format!(
        "{} -> {} × {}",
        reservation.quantity,
        reservation.quantity - by,
        sku
    );
    let change = Change {
        entity_type: "reservation",
        entity_id: &reservation.id,
        action: "shrunk",
        before: Some("held"),
        after: Some("held"),
        detail: Some(&detail),
    };
    audit::record(conn, change, actor, now).await
}
