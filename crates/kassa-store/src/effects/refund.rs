//! Refunds the provider reports (`charge.refunded`, `refund.*`): each recorded once by its
//! provider id and moved by its machine; the order's refunded total and status follow
//! (`plan::decide_refunded`).

use kassa_app::ports::{Actor, Applied, ProviderRefund, StoreError, StoreResult};
use kassa_domain::plan::decide_refunded;
use kassa_domain::refund::RefundStatus;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::db::unavailable;
use crate::transitions::{self, Outcome};

pub(crate) async fn record(
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
    let order = transitions::lock_order(conn, &order_id).await?;
    for refund in refunds {
        upsert(conn, &order_id, &payment_id, refund, actor, now).await?;
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
    if let Some((event, step)) = decide_refunded(order, captured, refunded) {
        transitions::move_order(conn, &order_id, event, step, actor, now).await?;
    }
    Ok(Applied::Done)
}

/// Records a provider refund by its provider id: inserted once, then moved by its machine.
async fn upsert(
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
        return insert(conn, order_id, payment_id, refund, actor, now).await;
    };
    let from = RefundStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("refund status {status:?}")))?;
    match transitions::refund(conn, order_id, &id, from, refund.status, actor, now).await? {
        Outcome::Moved(_) => {}
        // A repeated or older report of a refund already further along: nothing to do.
        Outcome::Refused(_) => {}
    }
    Ok(())
}

async fn insert(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_id: &str,
    refund: &ProviderRefund,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
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
    audit::record(conn, change, actor, now).await
}
