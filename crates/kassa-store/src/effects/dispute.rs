//! Disputes the provider reports (`charge.dispute.created|updated|closed`): each tracked in its
//! own row (amount, reason, status, evidence due date), the order moved to `disputed` and back
//! to where it was when the dispute closes (`plan::decide_dispute`); a lost dispute's amount is
//! counted as gone (no longer refundable), once. Each step is audited and announced.

use kassa_app::ports::{Actor, Applied, ProviderDispute, StoreResult};
use kassa_domain::order::OrderStatus;
use kassa_domain::plan::{decide_dispute, status_of_refunds};
use sqlx::AnyConnection;

use crate::audit::{self, Change};
use crate::db::unavailable;
use crate::{outbox, transitions};

pub(crate) async fn record(
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
    let order_id: Option<String> =
        sqlx::query_scalar("SELECT order_id FROM payments WHERE provider_payment_intent_id = $1")
            .bind(intent_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
    let Some(order_id) = order_id else {
        return Ok(Applied::Ignored(format!("no Kassa order for {intent_id}")));
    };
    let status = transitions::lock_order(conn, &order_id).await?;
    let known: Option<String> = sqlx::query_scalar("SELECT status FROM disputes WHERE id = $1")
        .bind(&dispute.id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    if known.as_deref().is_some_and(is_final) && !is_final(&dispute.status) {
        return Ok(Applied::Ignored(format!(
            "dispute {} is closed; an older report of it changes nothing",
            dispute.id
        )));
    }
    let before = upsert(conn, &order_id, dispute, actor, now).await?;
    if before.as_deref() == Some(dispute.status.as_str()) {
        return Ok(Applied::Ignored(format!(
            "dispute {} is already {}",
            dispute.id, dispute.status
        )));
    }
    if dispute.status == "lost" && before.as_deref() != Some("lost") {
        sqlx::query(
            "UPDATE orders SET dispute_lost_amount = dispute_lost_amount + $2 WHERE id = $1",
        )
        .bind(&order_id)
        .bind(dispute.amount_minor)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    }
    let topic = match (before.is_none(), closed) {
        (true, _) => "dispute.created",
        (false, true) => "dispute.closed",
        (false, false) => "dispute.updated",
    };
    let subject = format!("{}:{}", dispute.id, dispute.status);
    outbox::notify_about(conn, topic, &order_id, &subject, now).await?;
    move_order(conn, &order_id, status, closed, actor, now).await?;
    Ok(Applied::Done)
}

/// A dispute in one of these statuses is over; no later report reopens it.
fn is_final(status: &str) -> bool {
    matches!(status, "won" | "lost" | "warning_closed")
}

/// The order goes to `disputed` when a dispute opens and back when it closes, where the machine
/// allows (an update of an open dispute moves nothing).
async fn move_order(
    conn: &mut AnyConnection,
    order_id: &str,
    status: OrderStatus,
    closed: bool,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let before_dispute: Option<String> =
        sqlx::query_scalar("SELECT status_before_dispute FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
    let mut before_dispute = before_dispute.as_deref().and_then(OrderStatus::parse);
    if closed && before_dispute.is_some() {
        // Back to what the refunds that stand now say, not what they said when it opened.
        let (captured, refunded): (i64, i64) =
            sqlx::query_as("SELECT captured_amount, refunded_amount FROM orders WHERE id = $1")
                .bind(order_id)
                .fetch_one(&mut *conn)
                .await
                .map_err(unavailable)?;
        before_dispute = Some(status_of_refunds(captured, refunded));
    }
    let Some((event, step)) = decide_dispute(status, before_dispute, closed) else {
        return Ok(());
    };
    transitions::move_order(conn, order_id, event, step, actor, now).await?;
    if !closed {
        // Remembered only once the dispute really opened, to return to when it closes.
        sqlx::query("UPDATE orders SET status_before_dispute = $2 WHERE id = $1")
            .bind(order_id)
            .bind(status.as_str())
            .execute(&mut *conn)
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Records the dispute as reported; returns the status it had before (`None`: new).
async fn upsert(
    conn: &mut AnyConnection,
    order_id: &str,
    dispute: &ProviderDispute,
    actor: &Actor,
    now: i64,
) -> StoreResult<Option<String>> {
    let before: Option<String> = sqlx::query_scalar("SELECT status FROM disputes WHERE id = $1")
        .bind(&dispute.id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    if before.is_none() {
        sqlx::query(
            "INSERT INTO disputes (id, order_id, amount, currency, reason, status, evidence_due_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(&dispute.id)
        .bind(order_id)
        .bind(dispute.amount_minor)
        .bind(&dispute.currency)
        .bind(dispute.reason.as_deref())
        .bind(&dispute.status)
        .bind(dispute.evidence_due_by)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    } else if before.as_deref() != Some(dispute.status.as_str()) {
        sqlx::query(
            "UPDATE disputes SET status = $2, amount = $3, reason = $4, evidence_due_by = $5, updated_at = $6 WHERE id = $1",
        )
        .bind(&dispute.id)
        .bind(&dispute.status)
        .bind(dispute.amount_minor)
        .bind(dispute.reason.as_deref())
        .bind(dispute.evidence_due_by)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    } else {
        return Ok(before);
    }
    let change = Change {
        entity_type: "dispute",
        entity_id: &dispute.id,
        action: if before.is_none() {
            "recorded"
        } else {
            "status_changed"
        },
        before: before.as_deref(),
        after: Some(&dispute.status),
        detail: dispute.reason.as_deref(),
    };
    audit::record(conn, change, actor, now).await?;
    Ok(before)
}
