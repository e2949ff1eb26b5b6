//! The webhook inbox and the effects of provider events. Each event's effects commit in the
//! same transaction as its `processed` mark, and the "already processed?" check is the first
//! statement of that transaction (risks W2, W3). Effects are keyed by Kassa's ids (payment,
//! order, reservation, outbox business key), never by which event delivered them (risk W1).

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, Applied, EventEffect, EventStatus, InboxEvent, ProviderDispute, ProviderPaymentIntent,
    ProviderRefund, Recorded, StoreError, StoreResult, WebhookStore,
};
use kassa_domain::order::{OrderEvent, OrderStatus, event_for_payment};
use kassa_domain::payment::{PaymentEvent, PaymentStatus, check_capture};
use kassa_domain::refund::RefundStatus;
use kassa_domain::reservation::ReservationEvent;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::db::{SqlStore, unavailable};
use crate::transitions;

/// Fault points inside the effect transaction, for tests.
pub const FAULT_AFTER_PAYMENT_TRANSITION: &str = "webhook.after_payment_transition";
pub const FAULT_AFTER_STOCK_COMMIT: &str = "webhook.after_stock_commit";

#[async_trait]
impl WebhookStore for SqlStore {
    async fn record_event(
        &self,
        id: &str,
        event_type: &str,
        payload: &str,
        now: i64,
    ) -> StoreResult<Recorded> {
        let inserted = sqlx::query(
            "INSERT INTO webhook_events (id, event_type, payload, status, attempts, next_attempt_at, received_at)
             VALUES ($1, $2, $3, 'received', 0, $4, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(event_type)
        .bind(payload)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(if inserted.rows_affected() == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    async fn inbox_event(&self, id: &str) -> StoreResult<Option<InboxEvent>> {
        let row = sqlx::query(
            "SELECT id, event_type, status, attempts, last_error, payload, received_at FROM webhook_events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(inbox_from_row).transpose()
    }

    async fn apply_event(
        &self,
        event_id: &str,
        effect: &EventEffect,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let claimed = sqlx::query(
            "UPDATE webhook_events SET status = 'processed', processed_at = $2
             WHERE id = $1 AND status IN ('received', 'failed')",
        )
        .bind(event_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        if claimed.rows_affected() != 1 {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(Applied::AlreadyProcessed);
        }
        let applied = match effect {
            EventEffect::PaymentIntent(intent) => {
                self.observe_in(&mut tx, intent, actor, now).await?
            }
            EventEffect::Refunds {
                payment_intent_id,
                refunds,
            } => apply_refunds(&mut tx, payment_intent_id, refunds, actor, now).await?,
            EventEffect::Dispute { dispute, closed } => {
                apply_dispute(&mut tx, dispute, *closed, actor, now).await?
            }
            EventEffect::Ignore(reason) => Applied::Ignored(reason.clone()),
        };
        if let Applied::Ignored(reason) = &applied {
            sqlx::query(
                "UPDATE webhook_events SET status = 'ignored', last_error = $2 WHERE id = $1",
            )
            .bind(event_id)
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(applied)
    }

    async fn observe_payment_intent(
        &self,
        intent: &ProviderPaymentIntent,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let applied = self.observe_in(&mut tx, intent, actor, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(applied)
    }

    async fn mark_event_failed(
        &self,
        event_id: &str,
        error: &str,
        attempts_max: i64,
        backoff_secs: i64,
        now: i64,
    ) -> StoreResult<EventStatus> {
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE webhook_events
             SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
                 status = CASE WHEN attempts + 1 >= $4 THEN 'dead' ELSE 'failed' END
             WHERE id = $1 AND status IN ('received', 'failed') RETURNING status",
        )
        .bind(event_id)
        .bind(error)
        .bind(now + backoff_secs)
        .bind(attempts_max)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let status = status.unwrap_or_else(|| "processed".into());
        EventStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("inbox status {status:?}")))
    }

    async fn due_events(&self, limit: i64, now: i64) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT id FROM webhook_events WHERE status IN ('received', 'failed') AND next_attempt_at <= $1
             ORDER BY received_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)
    }

    async fn inbox_events_with_status(
        &self,
        status: EventStatus,
        limit: i64,
    ) -> StoreResult<Vec<InboxEvent>> {
        let rows = sqlx::query(
            "SELECT id, event_type, status, attempts, last_error, payload, received_at FROM webhook_events
             WHERE status = $1 ORDER BY received_at, id LIMIT $2",
        )
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(inbox_from_row).collect()
    }

    async fn replay_event(&self, event_id: &str, now: i64) -> StoreResult<bool> {
        let replayed = sqlx::query(
            "UPDATE webhook_events SET status = 'received', attempts = 0, next_attempt_at = $2
             WHERE id = $1 AND status IN ('failed', 'dead')",
        )
        .bind(event_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(replayed.rows_affected() == 1)
    }
}

fn inbox_from_row(row: &AnyRow) -> StoreResult<InboxEvent> {
    let status: String = row.try_get("status").map_err(unavailable)?;
    Ok(InboxEvent {
        id: row.try_get("id").map_err(unavailable)?,
        event_type: row.try_get("event_type").map_err(unavailable)?,
        status: EventStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("inbox status {status:?}")))?,
        attempts: row.try_get("attempts").map_err(unavailable)?,
        last_error: row.try_get("last_error").map_err(unavailable)?,
        payload: row.try_get("payload").map_err(unavailable)?,
        received_at: row.try_get("received_at").map_err(unavailable)?,
    })
}

/// Kassa's payment row for an intent: by intent id, or — for an event that arrives before the
/// checkout recorded the id (risk G1) — by the payment id Kassa put in the intent's metadata.
struct PaymentRow {
    id: String,
    order_id: String,
    amount: i64,
    currency: String,
}

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
        "SELECT id, order_id, amount, currency FROM payments
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
        amount: row.try_get("amount").map_err(unavailable)?,
        currency: row.try_get("currency").map_err(unavailable)?,
    };
    sqlx::query("UPDATE payments SET provider_payment_intent_id = $2 WHERE id = $1 AND provider_payment_intent_id IS NULL")
        .bind(&payment.id)
        .bind(&intent.id)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    Ok(Some(payment))
}

impl SqlStore {
    async fn observe_in(
        &self,
        conn: &mut AnyConnection,
        intent: &ProviderPaymentIntent,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        let Some(payment) = payment_for_intent(conn, intent).await? else {
            return Ok(Applied::Ignored(format!(
                "no Kassa payment for {}",
                intent.id
            )));
        };
        if intent.amount_minor != payment.amount || intent.currency != payment.currency {
            let reason = format!(
                "amount_mismatch: provider reports {} {}, order expects {} {}",
                intent.amount_minor, intent.currency, payment.amount, payment.currency
            );
            flag_order(conn, &payment.order_id, &reason, actor, now).await?;
            return Ok(Applied::Flagged(reason));
        }
        if intent.status == PaymentStatus::Succeeded
            && let Err(mismatch) = check_capture(payment.amount, intent.amount_received_minor)
        {
            // Nothing moves: neither payment nor order status, nor any stock.
            let reason = format!("capture_mismatch: {mismatch}");
            flag_order(conn, &payment.order_id, &reason, actor, now).await?;
            return Ok(Applied::Flagged(reason));
        }
        let Some(status) = transitions::payment(
            conn,
            &payment.id,
            PaymentEvent::Observed(intent.status),
            actor,
            now,
        )
        .await?
        else {
            return Ok(Applied::Ignored(format!(
                "stale: {} for payment {}",
                intent.status, payment.id
            )));
        };
        self.faults().check(FAULT_AFTER_PAYMENT_TRANSITION)?;
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
        match status {
            PaymentStatus::Succeeded => {
                self.payment_succeeded(conn, &payment, intent, actor, now)
                    .await
            }
            PaymentStatus::Canceled => {
                transitions::settle_reservations(
                    conn,
                    &payment.order_id,
                    ReservationEvent::Release,
                    actor,
                    now,
                )
                .await?;
                transitions::order(conn, &payment.order_id, OrderEvent::Cancel, actor, now).await?;
                outbox(conn, "order.canceled", &payment.order_id, now).await?;
                Ok(Applied::Done)
            }
            other => {
                if let Some(event) = event_for_payment(other) {
                    transitions::order(conn, &payment.order_id, event, actor, now).await?;
                }
                Ok(Applied::Done)
            }
        }
    }

    /// Commits the order's stock, then marks it paid — or, if its stock is gone, flags it for an
    /// operator without pretending it is paid and without moving any stock (risk G2).
    async fn payment_succeeded(
        &self,
        conn: &mut AnyConnection,
        payment: &PaymentRow,
        intent: &ProviderPaymentIntent,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        // Released reservations (an expired checkout paid after all) are re-taken first, all or
        // nothing, so a shortfall leaves every counter as it was.
        if !recommit_released(conn, &payment.order_id, actor, now).await? {
            let reason = "stock_unavailable: payment succeeded but the reserved stock was released and is sold out";
            flag_order(conn, &payment.order_id, reason, actor, now).await?;
            return Ok(Applied::Flagged(reason.into()));
        }
        transitions::settle_reservations(
            conn,
            &payment.order_id,
            ReservationEvent::Commit,
            actor,
            now,
        )
        .await?;
        self.faults().check(FAULT_AFTER_STOCK_COMMIT)?;
        sqlx::query("UPDATE orders SET captured_amount = $2 WHERE id = $1")
            .bind(&payment.order_id)
            .bind(intent.amount_received_minor)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        transitions::order(
            conn,
            &payment.order_id,
            OrderEvent::PaymentSucceeded,
            actor,
            now,
        )
        .await?;
        outbox(conn, "order.paid", &payment.order_id, now).await?;
        Ok(Applied::Done)
    }
}

/// One released reservation's stock.
struct Released {
    id: String,
    sku: String,
    location: String,
    quantity: i64,
}

/// Takes stock again, straight into `committed`, for reservations released before the payment
/// succeeded. All or nothing: on the first shortfall the SKUs already taken are given back and
/// `false` is returned.
async fn recommit_released(
    conn: &mut AnyConnection,
    order_id: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<bool> {
    let rows = sqlx::query(
        "SELECT id, sku, location, quantity FROM reservations WHERE order_id = $1 AND status = 'released' ORDER BY sku",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let mut released = Vec::with_capacity(rows.len());
    for row in &rows {
        released.push(Released {
            id: row.try_get("id").map_err(unavailable)?,
            sku: row.try_get("sku").map_err(unavailable)?,
            location: row.try_get("location").map_err(unavailable)?,
            quantity: row.try_get("quantity").map_err(unavailable)?,
        });
    }
    for (taken, item) in released.iter().enumerate() {
        if !move_committed(conn, item, item.quantity, now).await? {
            for done in &released[..taken] {
                move_committed(conn, done, -done.quantity, now).await?;
            }
            return Ok(false);
        }
    }
    for item in &released {
        sqlx::query("UPDATE reservations SET status = 'committed', updated_at = $2 WHERE id = $1")
            .bind(&item.id)
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
        let change = Change {
            entity_type: "reservation",
            entity_id: &item.id,
            action: "recommitted",
            before: Some("released"),
            after: Some("committed"),
            detail: Some("payment succeeded after release"),
        };
        audit::record(conn, change, actor, now).await?;
    }
    Ok(true)
}

/// Adds `delta` to `committed` if that leaves `available` at zero or more (a negative delta
/// gives stock back); true if the row moved.
async fn move_committed(
    conn: &mut AnyConnection,
    item: &Released,
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

async fn flag_order(
    conn: &mut AnyConnection,
    order_id: &str,
    reason: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    sqlx::query("UPDATE orders SET needs_attention = $2, updated_at = $3 WHERE id = $1")
        .bind(order_id)
        .bind(reason)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    let change = Change {
        entity_type: "order",
        entity_id: order_id,
        action: "flagged",
        before: None,
        after: Some("needs_attention"),
        detail: Some(reason),
    };
    audit::record(conn, change, actor, now).await?;
    outbox(conn, "order.needs_attention", order_id, now).await
}

/// Queues a merchant notification at most once per (topic, order).
pub(crate) async fn outbox(
    conn: &mut AnyConnection,
    topic: &str,
    order_id: &str,
    now: i64,
) -> StoreResult<()> {
    let business_key = format!("{topic}:{order_id}");
    let payload = serde_json::json!({ "type": topic, "order_id": order_id }).to_string();
    sqlx::query(
        "INSERT INTO outbox (id, topic, business_key, payload, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) ON CONFLICT (business_key) DO NOTHING",
    )
    .bind(format!("obx_{}", business_key.replace([':', '.'], "_")))
    .bind(topic)
    .bind(&business_key)
    .bind(payload)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

async fn apply_refunds(
    conn: &mut AnyConnection,
    payment_intent_id: &str,
    refunds: &[ProviderRefund],
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let payment =
        sqlx::query("SELECT id, order_id FROM payments WHERE provider_payment_intent_id = $1")
            .bind(payment_intent_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some(payment) = payment else {
        return Ok(Applied::Ignored(format!(
            "no Kassa payment for {payment_intent_id}"
        )));
    };
    let payment_id: String = payment.try_get("id").map_err(unavailable)?;
    let order_id: String = payment.try_get("order_id").map_err(unavailable)?;
    for refund in refunds {
        upsert_refund(conn, &order_id, &payment_id, refund, actor, now).await?;
    }
    let refunded: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE order_id = $1 AND status = 'succeeded'",
    )
    .bind(&order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let captured: i64 = sqlx::query_scalar(
        "UPDATE orders SET refunded_amount = $2 WHERE id = $1 RETURNING captured_amount",
    )
    .bind(&order_id)
    .bind(refunded)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    if refunded > 0 {
        let event = if refunded >= captured {
            OrderEvent::RefundedFully
        } else {
            OrderEvent::RefundedPartially
        };
        transitions::order(conn, &order_id, event, actor, now).await?;
    }
    Ok(Applied::Done)
}

/// Records a provider refund by its provider id: inserted once, then moved by its state machine.
async fn upsert_refund(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_id: &str,
    refund: &ProviderRefund,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let existing: Option<(String, String)> =
        sqlx::query_as("SELECT id, status FROM refunds WHERE provider_refund_id = $1")
            .bind(&refund.id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some((id, status)) = existing else {
        let id = format!("ref_{}", refund.id.trim_start_matches("re_"));
        sqlx::query(
            "INSERT INTO refunds (id, order_id, payment_id, amount, currency, status, reason, provider_idempotency_key,
                 provider_refund_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'provider', $7, $8, $9, $9)",
        )
        .bind(&id)
        .bind(order_id)
        .bind(payment_id)
        .bind(refund.amount_minor)
        .bind(&refund.currency)
        .bind(refund.status.as_str())
        .bind(format!("external:{}", refund.id))
        .bind(&refund.id)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
        let change = Change {
            entity_type: "refund",
            entity_id: &id,
            action: "recorded",
            before: None,
            after: Some(refund.status.as_str()),
            detail: Some(&refund.id),
        };
        return audit::record(conn, change, actor, now).await;
    };
    let from = RefundStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("refund status {status:?}")))?;
    let Ok(to) = from.apply(refund.status) else {
        return Ok(());
    };
    let moved = sqlx::query(
        "UPDATE refunds SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
    )
    .bind(&id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    if moved.rows_affected() == 1 {
        let change = Change {
            entity_type: "refund",
            entity_id: &id,
            action: "status_changed",
            before: Some(from.as_str()),
            after: Some(to.as_str()),
            detail: None,
        };
        audit::record(conn, change, actor, now).await?;
    }
    Ok(())
}

async fn apply_dispute(
    conn: &mut AnyConnection,
    dispute: &ProviderDispute,
    closed: bool,
    actor: &Actor,
    now: i64,
) -> StoreResult<Applied> {
    let Some(intent_id) = dispute.payment_intent_id.as_deref() else {
        return Ok(Applied::Ignored(format!(
            "dispute {} names no payment intent",
            dispute.id
        )));
    };
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT o.id, o.status, o.status_before_dispute FROM orders o JOIN payments p ON p.order_id = o.id
         WHERE p.provider_payment_intent_id = $1",
    )
    .bind(intent_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some((order_id, status, before_dispute)) = row else {
        return Ok(Applied::Ignored(format!("no Kassa order for {intent_id}")));
    };
    let event = if closed {
        let back_to = before_dispute
            .as_deref()
            .and_then(OrderStatus::parse)
            .unwrap_or(OrderStatus::Paid);
        OrderEvent::DisputeClosed { back_to }
    } else {
        OrderEvent::DisputeOpened
    };
    match transitions::order(conn, &order_id, event, actor, now).await? {
        Some(_) => {
            if !closed {
                // Remembered only once the dispute really opened, to return to when it closes.
                sqlx::query("UPDATE orders SET status_before_dispute = $2 WHERE id = $1")
                    .bind(&order_id)
                    .bind(&status)
                    .execute(&mut *conn)
                    .await
                    .map_err(unavailable)?;
            }
            let topic = if closed {
                "order.dispute_closed"
            } else {
                "order.disputed"
            };
            outbox(conn, topic, &order_id, now).await?;
            Ok(Applied::Done)
        }
        None => Ok(Applied::Ignored(format!(
            "order {order_id} is {status}; dispute event not applicable"
        ))),
    }
}
