//! A PaymentIntent state reported by the provider (webhook, client sync, reconciliation): the
//! payment and its order are locked, `plan::decide_payment` decides, and the moves are made.

use kassa_app::ports::{
    Actor, Applied, FailedAttempt, NewRefund, ProviderPaymentIntent, StoreError, StoreResult,
};
use kassa_domain::commands::Operation;
use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;
use kassa_domain::plan::{
    ObservedPayment, PaymentMoves, PaymentPlan, PaymentSnapshot, StockMove, decide_payment,
    failed_attempt,
};
use sqlx::{AnyConnection, Row};

use super::flag_order;
use crate::commands::end_operation_in;
use crate::db::{SqlStore, unavailable};
use crate::refunds::insert_requested;

/// The merchant notification of a failed payment attempt.
const PAYMENT_FAILED: &str = "payment.failed";
use crate::{outbox, transitions};

/// Fault points inside the effect transaction, for tests.
pub const FAULT_AFTER_PAYMENT_TRANSITION: &str = "webhook.after_payment_transition";
pub const FAULT_AFTER_STOCK_COMMIT: &str = "webhook.after_stock_commit";

/// Flags the order for a person and gives up a capture it was waiting for: with the order in
/// someone's hands, no worker should retry the capture behind their back.
async fn flag_for_attention(
    conn: &mut AnyConnection,
    order_id: &str,
    reason: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    flag_order(conn, order_id, reason, actor, now).await?;
    end_operation_in(conn, order_id, Operation::Capture, actor, now).await
}

/// Money taken for a canceled order goes back: a refund of everything received is recorded as
/// pending (the refund sender calls the provider), with a key derived from the payment, so it is
/// made once however often the success is reported.
async fn refund_after_cancel(
    conn: &mut AnyConnection,
    payment: &PaymentRow,
    intent: &ProviderPaymentIntent,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let refund_id = format!("ref_after_cancel_{}", payment.id);
    let new = NewRefund {
        provider_idempotency_key: kassa_domain::provider_keys::refund(&refund_id),
        refund_id,
        order_id: payment.order_id.clone(),
        client_scope: "kassa".into(),
        client_key: format!("paid-after-cancel:{}", payment.id),
        request_hash: String::new(),
        requested_minor: Some(intent.amount_received_minor),
        reason: None,
        restock: false,
    };
    let paid_by = Some(payment.id.as_str());
    insert_requested(
        conn,
        &new,
        paid_by,
        intent.amount_received_minor,
        actor,
        now,
    )
    .await
}

/// Kassa's payment for an intent.
pub(crate) struct PaymentRow {
    pub(crate) id: String,
    pub(crate) order_id: String,
}

/// Applies the intent's reported state to Kassa's payment for it, and announces the attempt
/// that failed: `failed` as its event reported it, else as the intent says now.
pub(crate) async fn observe(
    store: &SqlStore,
    conn: &mut AnyConnection,
    intent: &ProviderPaymentIntent,
    failed: Option<&FailedAttempt>,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let Some(payment) = payment_for_intent(conn, intent).await? else {
        return Ok(Applied::Ignored(format!(
            "no Kassa payment for {}",
            intent.id
        )));
    };
    let attempt = match failed {
        Some(failed) => Some((failed.charge_id.as_str(), failed.decline_code.as_deref())),
        None => failed_attempt(
            intent.status,
            intent.latest_charge.as_deref(),
            intent.last_error.as_deref(),
        )
        .map(|charge| (charge, intent.last_error.as_deref())),
    };
    if let Some((charge, decline_code)) = attempt {
        outbox::notify_attempt(
            conn,
            PAYMENT_FAILED,
            &payment.order_id,
            charge,
            decline_code,
            now,
        )
        .await?;
    }
    observe_for(store, conn, &payment, intent, actor, now).await
}

/// Applies the reported state to `payment`, found by the caller.
pub(crate) async fn observe_for(
    store: &SqlStore,
    conn: &mut AnyConnection,
    payment: &PaymentRow,
    intent: &ProviderPaymentIntent,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let held = snapshot(conn, payment).await?;
    let seen = ObservedPayment {
        status: intent.status,
        amount_minor: intent.amount_minor,
        currency: &intent.currency,
        amount_received_minor: intent.amount_received_minor,
    };
    match decide_payment(&held, &seen) {
        PaymentPlan::Ignore(reason) => Ok(Applied::Ignored(reason)),
        PaymentPlan::Flag(reason) => {
            flag_for_attention(conn, &payment.order_id, &reason, actor, now).await?;
            Ok(Applied::Flagged(reason))
        }
        PaymentPlan::Apply(moves) => {
            apply_moves(store, conn, payment, intent, moves, actor, now).await
        }
    }
}

/// Kassa's payment row for an intent: by intent id, or — for an event that arrives before the
/// checkout recorded the id (risk G1) — by the payment id Kassa put in the intent's metadata.
async fn payment_for_intent(
    conn: &mut AnyConnection,
    intent: &ProviderPaymentIntent,
) -> StoreResult<Option<PaymentRow>> {
    let by_metadata = intent
        .metadata
        .iter()
        .find(|(key, _)| key == "kassa_payment_id")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let row = sqlx::query(
        "SELECT id, order_id FROM payments
         WHERE provider_payment_intent_id = $1
            OR (id = $2 AND provider_payment_intent_id IS NULL)
         ORDER BY attempt DESC LIMIT 1",
    )
    .bind(&intent.id)
    .bind(by_metadata)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    let payment = PaymentRow {
        id: row.try_get("id").map_err(unavailable)?,
        order_id: row.try_get("order_id").map_err(unavailable)?,
    };
    // The order first, then the payment, in every path (no lock-order deadlock on PostgreSQL).
    transitions::lock_order(conn, &payment.order_id).await?;
    sqlx::query("UPDATE payments SET provider_payment_intent_id = $2 WHERE id = $1 AND provider_payment_intent_id IS NULL")
        .bind(&payment.id)
        .bind(&intent.id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(Some(payment))
}

/// The order (locked first, as every plan does) and the payment (locked second).
async fn snapshot(conn: &mut AnyConnection, payment: &PaymentRow) -> StoreResult<PaymentSnapshot> {
    let order = transitions::lock_order(conn, &payment.order_id).await?;
    let row = sqlx::query(
        "UPDATE payments SET version = version WHERE id = $1 RETURNING status, amount, currency",
    )
    .bind(&payment.id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let status: String = row.try_get("status").map_err(unavailable)?;
    // What Kassa decided to capture: the amount of a capture in progress, else the order's
    // total (lower than the authorized amount after an edit).
    let to_capture_minor: i64 = sqlx::query_scalar(
        "SELECT CASE WHEN capture_amount IS NULL THEN total ELSE capture_amount END FROM orders WHERE id = $1",
    )
    .bind(&payment.order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(PaymentSnapshot {
        order,
        payment: PaymentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("payment status {status:?}")))?,
        amount_minor: row.try_get("amount").map_err(unavailable)?,
        currency: row.try_get("currency").map_err(unavailable)?,
        to_capture_minor,
    })
}

async fn apply_moves(
    store: &SqlStore,
    conn: &mut AnyConnection,
    payment: &PaymentRow,
    intent: &ProviderPaymentIntent,
    moves: PaymentMoves,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let order_id = payment.order_id.as_str();
    transitions::move_payment(conn, order_id, &payment.id, moves.payment, actor, now).await?;
    store.faults().check(FAULT_AFTER_PAYMENT_TRANSITION)?;
    sqlx::query(
        "UPDATE payments SET amount_capturable = $2, amount_received = $3, last_error = COALESCE($4, last_error)
         WHERE id = $1",
    )
    .bind(&payment.id)
    .bind(intent.amount_capturable_minor)
    .bind(intent.amount_received_minor)
    .bind(intent.last_error.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    match moves.stock {
        StockMove::Keep => {}
        StockMove::Release => transitions::release_reservations(conn, order_id, actor, now).await?,
        StockMove::Commit => {
            if !transitions::commit_reservations(conn, order_id, actor, now).await? {
                let reason = "stock_unavailable: payment succeeded but the reserved stock was released and is sold out";
                flag_for_attention(conn, order_id, reason, actor, now).await?;
                return Ok(Applied::Flagged(reason.into()));
            }
            store.faults().check(FAULT_AFTER_STOCK_COMMIT)?;
        }
    }
    if let Some(captured) = moves.captured_minor {
        sqlx::query("UPDATE orders SET captured_amount = $2 WHERE id = $1")
            .bind(order_id)
            .bind(captured)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
    }
    if let Some((event, step)) = moves.order {
        transitions::move_order(conn, order_id, event, step, actor, now).await?;
        // The provider call an operation was waiting for has settled.
        match step.to {
            OrderStatus::Paid | OrderStatus::Authorized => {
                end_operation_in(conn, order_id, Operation::Capture, actor, now).await?;
                // Paid after all while the janitor was expiring it: the payment stands.
                end_operation_in(conn, order_id, Operation::Expire, actor, now).await?;
                if step.to == OrderStatus::Paid {
                    crate::credits::grant_for_paid_order(store, conn, order_id, now).await?;
                }
            }
            OrderStatus::Canceled => {
                for operation in Operation::ALL {
                    end_operation_in(conn, order_id, *operation, actor, now).await?;
                }
            }
            _ => {}
        }
        if let Some(topic) = moves.notify {
            outbox::notify(conn, topic, order_id, now).await?;
        }
    }
    if moves.refund_received {
        refund_after_cancel(conn, payment, intent, actor, now).await?;
        if let Some(topic) = moves.notify {
            outbox::notify(conn, topic, order_id, now).await?;
        }
    }
    if let Some(reason) = moves.flag {
        flag_for_attention(conn, order_id, &reason, actor, now).await?;
        return Ok(Applied::Flagged(reason));
    }
    Ok(Applied::Done)
}
