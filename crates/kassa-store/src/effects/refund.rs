//! Refunds: the provider's reports (`charge.refunded`, `refund.*`, and the answer to Kassa's own
//! call) recorded once per refund — matched by Kassa's id from the refund's metadata first, then
//! by the provider's id, so a webhook that beats the API call's answer never makes a second row
//! — and what follows for the order: refunded total, status (`plan::decide_refunded`), restock.

use kassa_app::ports::{Actor, Applied, ProviderRefund, StoreError, StoreResult};
use kassa_domain::attention::AttentionReason;
use kassa_domain::order::OrderStatus;
use kassa_domain::plan::decide_refunded;
use kassa_domain::refund::RefundStatus;
use sqlx::{AnyConnection, Row};

use super::flag_order;
use crate::audit::{self, Change};
use crate::db::unavailable;
use crate::outbox;
use crate::transitions::{self, Outcome};

/// A webhook's refunds of one PaymentIntent.
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
        apply_report(conn, &order_id, &payment_id, refund, actor, now).await?;
    }
    settle_order(conn, &order_id, order, actor, now).await?;
    Ok(Applied::Done)
}

/// Records one report of a refund: Kassa's row (by its id in the metadata, then by the
/// provider's id) moves by its machine, or a refund made outside Kassa is inserted once.
pub(crate) async fn apply_report(
    conn: &mut AnyConnection,
    order_id: &str,
    payment_id: &str,
    refund: &ProviderRefund,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let kassa_id = refund
        .metadata
        .iter()
        .find(|(key, _)| key == "kassa_refund_id")
        .map(|(_, value)| value.as_str())
        .unwrap_or_default();
    let existing: Option<(String, String)> = sqlx::query_as(
        "SELECT id, status FROM refunds
         WHERE provider_refund_id = $1 OR (id = $2 AND order_id = $3 AND provider_refund_id IS NULL)
         ORDER BY provider_refund_id NULLS LAST LIMIT 1",
    )
    .bind(&refund.id)
    .bind(kassa_id)
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some((id, status)) = existing else {
        return insert_external(conn, order_id, payment_id, refund, actor, now).await;
    };
    sqlx::query(
        "UPDATE refunds SET provider_refund_id = $2 WHERE id = $1 AND provider_refund_id IS NULL",
    )
    .bind(&id)
    .bind(&refund.id)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let from = RefundStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("refund status {status:?}")))?;
    match transitions::refund(conn, order_id, &id, from, refund.status, actor, now).await? {
        Outcome::Moved(_) => {}
        // A repeated or older report of a refund already further along: nothing to do.
        Outcome::Refused(_) => {}
    }
    Ok(())
}

/// A refund made outside Kassa (the provider's dashboard), recorded so the books agree.
async fn insert_external(
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

/// Brings the order in line with its refunds: refunded total, status, stock returned for a
/// succeeded refund with restock (once: returned stock cannot return again), a notification per
/// succeeded refund. `order` is its status as locked by the caller.
pub(crate) async fn settle_order(
    conn: &mut AnyConnection,
    order_id: &str,
    order: OrderStatus,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let succeeded = sqlx::query(
        "SELECT id, restock FROM refunds WHERE order_id = $1 AND status = 'succeeded' ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let refunded: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds WHERE order_id = $1 AND status = 'succeeded'",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    let (captured, before): (i64, i64) =
        sqlx::query_as("SELECT captured_amount, refunded_amount FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
    sqlx::query("UPDATE orders SET refunded_amount = $2, updated_at = $3 WHERE id = $1")
        .bind(order_id)
        .bind(refunded)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    if refunded < before {
        let reason = "refund_reversed: a refund reported succeeded has since failed; the customer \
                      is not paid back: resolve with refund to ask again, or dismiss once paid \
                      back another way";
        flag_order(conn, order_id, reason, actor, now).await?;
    }
    flag_refund_failures(conn, order_id, actor, now).await?;
    let mut restock = false;
    for row in &succeeded {
        let id: String = row.try_get("id").map_err(unavailable)?;
        let wants_restock: i64 = row.try_get("restock").map_err(unavailable)?;
        restock |= wants_restock != 0;
        outbox::notify_about(conn, "refund.succeeded", order_id, &id, now).await?;
    }
    if restock {
        transitions::return_stock(conn, order_id, actor, now).await?;
    }
    crate::credits::claw_back_refunds(conn, order_id, actor, now).await?;
    if let Some((event, step)) = decide_refunded(order, captured, refunded) {
        transitions::move_order(conn, order_id, event, step, actor, now).await?;
        if step.to == OrderStatus::Refunded {
            outbox::notify(conn, "order.refunded", order_id, now).await?;
        }
    }
    Ok(())
}

/// A refund Kassa started on its own (money taken for a canceled order, a cancel after capture,
/// a person's resolution) that failed means a customer is not paid back: a person must know,
/// once per failed refund (`failure_flagged`), so an order resolved since is not flagged again
/// for it. While the order is flagged for something else the failure waits, and is raised when
/// that is resolved (the resolution calls this again).
pub(crate) async fn flag_refund_failures(
    conn: &mut AnyConnection,
    order_id: &str,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let (unflagged, flagged): (i64, Option<String>) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM refunds WHERE order_id = $1 AND status = 'failed'
                     AND client_scope = 'kassa' AND failure_flagged = 0),
                needs_attention FROM orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)?;
    if unflagged == 0 || flagged.is_some() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE refunds SET failure_flagged = 1
         WHERE order_id = $1 AND status = 'failed' AND client_scope = 'kassa' AND failure_flagged = 0",
    )
    .bind(order_id)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let reason = AttentionReason::KassaRefundFailed
        .flag("a refund Kassa started was refused; the customer is not paid back");
    flag_order(conn, order_id, &reason, actor, now).await
}
