//! Commands on a placed order (risks O1–O3, P3, P5): each locks the order, loads its money and
//! lines, asks `kassa_domain::commands`, and applies the answer in the same transaction. A
//! capture or cancel marks the order with its pending operation before the provider call.

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, CancelStart, CaptureStart, EditOutcome, OrderCommandStore, OrderEdit, StoreError,
    StoreResult,
};
use kassa_domain::commands::{
    CancelPath, EditPlan, HeldLine, Operation, OrderMoney, Refusal, decide_cancel, decide_capture,
    decide_edit,
};
use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::db::{SqlStore, unavailable};
use crate::transitions;

#[async_trait]
impl OrderCommandStore for SqlStore {
    async fn begin_capture(
        &self,
        order_id: &str,
        requested_minor: Option<i64>,
        may_resume: bool,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<CaptureStart> {
        let mut tx = self.begin().await?;
        let Some(money) = locked_money(&mut tx, order_id).await? else {
            tx.rollback().await?;
            return Ok(CaptureStart::OrderMissing);
        };
        if !may_resume && money.pending_operation.is_some() {
            tx.rollback().await?;
            return Ok(CaptureStart::Refused(Refusal::InvalidState(
                "an operation on this order is already in progress".into(),
            )));
        }
        let amount = match decide_capture(&money, requested_minor) {
            Ok(amount) => amount,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(CaptureStart::Refused(refusal));
            }
        };
        let Some(LatestPayment {
            id: payment_id,
            intent,
            status,
            ..
        }) = latest_payment(&mut tx, order_id).await?
        else {
            return Err(StoreError::Corrupt(format!(
                "authorized order {order_id} has no payment"
            )));
        };
        if status != PaymentStatus::RequiresCapture {
            tx.rollback().await?;
            return Ok(CaptureStart::Refused(Refusal::InvalidState(format!(
                "the payment is {status}, not waiting for capture"
            ))));
        }
        if money.pending_operation.is_none() {
            mark_operation(
                &mut tx,
                order_id,
                Operation::Capture,
                Some(amount),
                actor,
                now,
            )
            .await?;
        }
        let application_fee_minor = fee_on_capture(&mut tx, &payment_id, amount).await?;
        tx.commit().await?;
        Ok(CaptureStart::Capture {
            payment_id,
            payment_intent_id: intent,
            amount_minor: amount,
            application_fee_minor,
        })
    }

    async fn begin_cancel(
        &self,
        order_id: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<CancelStart> {
        let mut tx = self.begin().await?;
        let Some(money) = locked_money(&mut tx, order_id).await? else {
            tx.rollback().await?;
            return Ok(CancelStart::OrderMissing);
        };
        let payment = latest_payment(&mut tx, order_id).await?;
        let path = match decide_cancel(&money, payment.as_ref().map(|payment| payment.status)) {
            Ok(path) => path,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(CancelStart::Refused(refusal));
            }
        };
        let start = match (path, payment) {
            (CancelPath::AlreadyCanceled, _) => {
                if let Some(operation) = money.pending_operation {
                    end_operation_in(&mut tx, order_id, operation, actor, now).await?;
                }
                tx.commit().await?;
                return Ok(CancelStart::AlreadyCanceled);
            }
            // A hosted page is ended first, so that nobody can pay it any more; a payment it
            // started is then canceled like any other.
            (CancelPath::AtProvider, Some(payment)) => match payment.session {
                Some(session_id) => CancelStart::HostedPage {
                    payment_id: payment.id,
                    session_id,
                },
                None => CancelStart::AtProvider {
                    payment_id: payment.id,
                    payment_intent_id: payment.intent,
                },
            },
            (CancelPath::RefundAll { amount_minor }, _) => CancelStart::RefundAll { amount_minor },
            (CancelPath::AtProvider, None) => {
                return Err(StoreError::Corrupt(format!(
                    "order {order_id} has no payment to cancel"
                )));
            }
        };
        if money.pending_operation.is_none() {
            mark_operation(&mut tx, order_id, Operation::Cancel, None, actor, now).await?;
        }
        tx.commit().await?;
        Ok(start)
    }

    async fn end_operation(
        &self,
        order_id: &str,
        operation: Operation,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        end_operation_in(&mut tx, order_id, operation, actor, now).await?;
        tx.commit().await
    }

    async fn edit_order(
        &self,
        order_id: &str,
        edit: &OrderEdit,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<EditOutcome> {
        let mut tx = self.begin().await?;
        let Some(money) = locked_money(&mut tx, order_id).await? else {
            tx.rollback().await?;
            return Ok(EditOutcome::OrderMissing);
        };
        let lines = held_lines(&mut tx, order_id).await?;
        let plan = match decide_edit(&money, &lines, &edit.lines) {
            Ok(plan) => plan,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(EditOutcome::Refused(refusal));
            }
        };
        apply_edit(&mut tx, order_id, &plan, actor, now).await?;
        if let Some(address) = &edit.shipping {
            sqlx::query(
                "UPDATE orders SET shipping_name = $2, shipping_line1 = $3, shipping_city = $4,
                     shipping_postal_code = $5, shipping_country = $6 WHERE id = $1",
            )
            .bind(order_id)
            .bind(&address.name)
            .bind(&address.line1)
            .bind(&address.city)
            .bind(&address.postal_code)
            .bind(&address.country)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        let detail = format!(
            "total {} -> {}{}",
            money.total_minor,
            plan.total_minor,
            if edit.shipping.is_some() {
                "; shipping address changed"
            } else {
                ""
            }
        );
        let change = Change {
            entity_type: "order",
            entity_id: order_id,
            action: "edited",
            before: Some(money.status.as_str()),
            after: Some(money.status.as_str()),
            detail: Some(&detail),
        };
        audit::record(&mut tx, change, actor, now).await?;
        tx.commit().await?;
        Ok(EditOutcome::Edited)
    }

    async fn orders_due_for_capture(&self, now: i64, limit: i64) -> StoreResult<Vec<String>> {
        let mut unit = self.read().await?;
        let found = sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = 'authorized' AND pending_operation IS NULL
               AND needs_attention IS NULL AND capture_due_at IS NOT NULL AND capture_due_at <= $1
             ORDER BY capture_due_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(found)
    }

    async fn orders_with_operation(
        &self,
        operation: Operation,
        idle_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        let mut unit = self.read().await?;
        let found = sqlx::query_scalar(
            "SELECT id FROM orders WHERE pending_operation = $1 AND updated_at <= $2
               AND needs_attention IS NULL
             ORDER BY updated_at, id LIMIT $3",
        )
        .bind(operation.as_str())
        .bind(idle_before)
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(found)
    }
}

/// The order's money with the order locked, or `None` if there is no such order.
async fn locked_money(conn: &mut AnyConnection, order_id: &str) -> StoreResult<Option<OrderMoney>> {
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    if exists.is_none() {
        return Ok(None);
    }
    let status = transitions::lock_order(conn, order_id).await?;
    order_money(conn, order_id, status).await.map(Some)
}

/// The order's money, read under its lock.
pub(crate) async fn order_money(
    conn: &mut AnyConnection,
    order_id: &str,
    status: OrderStatus,
) -> StoreResult<OrderMoney> {
    let row = sqlx::query(
        "SELECT total, captured_amount, dispute_lost_amount, pending_operation, capture_amount,
                (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds
                 WHERE order_id = $1 AND status IN ('pending', 'succeeded')) AS refunds_held
         FROM orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let operation: Option<String> = row.try_get("pending_operation").map_err(unavailable)?;
    Ok(OrderMoney {
        status,
        pending_operation: operation
            .map(|text| {
                Operation::parse(&text)
                    .ok_or_else(|| StoreError::Corrupt(format!("pending operation {text:?}")))
            })
            .transpose()?,
        total_minor: row.try_get("total").map_err(unavailable)?,
        captured_minor: row.try_get("captured_amount").map_err(unavailable)?,
        refunds_held_minor: row.try_get("refunds_held").map_err(unavailable)?,
        dispute_lost_minor: row.try_get("dispute_lost_amount").map_err(unavailable)?,
        capture_minor: row.try_get("capture_amount").map_err(unavailable)?,
    })
}

/// The latest payment attempt: id, PaymentIntent id (once known), status.
/// An order's latest payment as a command sees it.
struct LatestPayment {
    id: String,
    /// Empty while the provider has no PaymentIntent for it.
    intent: String,
    /// A hosted payment's Checkout Session.
    session: Option<String>,
    status: PaymentStatus,
}

async fn latest_payment(
    conn: &mut AnyConnection,
    order_id: &str,
) -> StoreResult<Option<LatestPayment>> {
    let row: Option<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
        "SELECT id, provider_payment_intent_id, provider_checkout_session_id, status
         FROM payments WHERE order_id = $1 ORDER BY attempt DESC LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some((id, intent, session, status)) = row else {
        return Ok(None);
    };
    let status = PaymentStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("payment status {status:?}")))?;
    // Nothing created at the provider yet (no intent, no hosted page): to a command, the same as
    // a payment still creating.
    let status = if intent.is_none() && session.is_none() {
        PaymentStatus::Creating
    } else {
        status
    };
    Ok(Some(LatestPayment {
        id,
        intent: intent.unwrap_or_default(),
        session,
        status,
    }))
}

/// Takes the order for `operation` with a compare-and-set on the pending operation.
async fn mark_operation(
    conn: &mut AnyConnection,
    order_id: &str,
    operation: Operation,
    capture_minor: Option<i64>,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let marked = sqlx::query(
        "UPDATE orders SET pending_operation = $2, capture_amount = COALESCE($3, capture_amount), updated_at = $4
         WHERE id = $1 AND pending_operation IS NULL",
    )
    .bind(order_id)
    .bind(operation.as_str())
    .bind(capture_minor)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if marked.rows_affected() != 1 {
        return Err(StoreError::ImpossibleMove {
            order_id: order_id.to_owned(),
            detail: format!("order {order_id} already had an operation when starting {operation}"),
        });
    }
    let detail = capture_minor.map(|amount| format!("amount {amount}"));
    let change = Change {
        entity_type: "order",
        entity_id: order_id,
        action: if operation == Operation::Capture {
            "capture_started"
        } else {
            "cancel_requested"
        },
        before: None,
        after: Some(operation.as_str()),
        detail: detail.as_deref(),
    };
    audit::record(conn, change, actor, now).await
}

/// Clears the pending `operation` if it is still that one; audited when it was.
pub(crate) async fn end_operation_in(
    conn: &mut AnyConnection,
    order_id: &str,
    operation: Operation,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let ended = sqlx::query(
        "UPDATE orders SET pending_operation = NULL, updated_at = $3 WHERE id = $1 AND pending_operation = $2",
    )
    .bind(order_id)
    .bind(operation.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if ended.rows_affected() == 1 {
        let change = Change {
            entity_type: "order",
            entity_id: order_id,
            action: "operation_ended",
            before: Some(operation.as_str()),
            after: None,
            detail: None,
        };
        audit::record(conn, change, actor, now).await?;
    }
    Ok(())
}

async fn held_lines(conn: &mut AnyConnection, order_id: &str) -> StoreResult<Vec<HeldLine>> {
    Ok(crate::orders::lines_of(conn, order_id)
        .await?
        .into_iter()
        .map(|line| HeldLine {
            sku: line.sku,
            quantity: line.quantity,
            unit_amount_minor: line.unit_amount_minor,
        })
        .collect())
}

/// The real order lines, the total and the reservations change together (risk O1).
async fn apply_edit(
    conn: &mut AnyConnection,
    order_id: &str,
    plan: &EditPlan,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    // By SKU, the order every stock write takes, so two transactions never wait on each other
    // in a circle.
    let mut lines: Vec<_> = plan.lines.iter().collect();
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    for line in lines {
        if line.quantity == 0 {
            sqlx::query("DELETE FROM order_lines WHERE order_id = $1 AND sku = $2")
                .bind(order_id)
                .bind(&line.sku)
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
        } else {
            sqlx::query("UPDATE order_lines SET quantity = $3, amount = $4 WHERE order_id = $1 AND sku = $2")
                .bind(order_id)
                .bind(&line.sku)
                .bind(line.quantity)
                .bind(line.amount_minor)
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
        }
        transitions::shrink_reservation(conn, order_id, &line.sku, line.released, actor, now)
            .await?;
    }
    sqlx::query("UPDATE orders SET subtotal = $2, total = $2, updated_at = $3 WHERE id = $1")
        .bind(order_id)
        .bind(plan.total_minor)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// A destination charge's fee on what is captured (the rate it was placed with, rounded down),
/// recorded on the payment so the checker compares it with the provider's.
async fn fee_on_capture(
    conn: &mut AnyConnection,
    payment_id: &str,
    amount: i64,
) -> StoreResult<Option<i64>> {
    let rate: Option<i64> = sqlx::query_scalar(
        "SELECT platform_fee_bps FROM payments WHERE id = $1 AND destination_account IS NOT NULL",
    )
    .bind(payment_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?
    .flatten();
    let Some(rate) = rate else { return Ok(None) };
    let fee = kassa_domain::marketplace::platform_fee(amount, rate);
    sqlx::query("UPDATE payments SET application_fee = $2 WHERE id = $1")
        .bind(payment_id)
        .bind(fee)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(Some(fee))
}
