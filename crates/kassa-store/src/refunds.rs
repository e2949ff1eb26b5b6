//! Refunds asked for through the API (risk P6). With the order locked, one transaction finds the
//! key's refund or decides a new one (`commands::decide_refund`: never more than captured less
//! pending and succeeded refunds and lost disputes) and records it as pending with its provider
//! key; concurrent requests queue on the lock, so together they can never exceed the captured
//! amount. The provider's answer is recorded in a second transaction.

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, NewRefund, RefundOutcome, RefundRecord, RefundStart, RefundStore, StoreError,
    StoreResult,
};
use kassa_domain::commands::decide_refund;
use kassa_domain::refund::RefundStatus;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, Change};
use crate::commands::order_money;
use crate::db::{Protection, SqlStore, unavailable};
use crate::effects::refund::{apply_report, settle_order};
use crate::transitions::{self, Outcome};

/// A static `SELECT` of every refund column (with its PaymentIntent) followed by `$tail`.
macro_rules! select_refunds {
    ($tail:literal) => {
        concat!(
            "SELECT r.id, r.order_id, p.provider_payment_intent_id, r.amount, r.currency, r.status, r.reason,
                    r.restock, r.provider_refund_id, r.provider_idempotency_key, r.failure_reason, r.created_at,
                    r.request_hash, p.destination_account
             FROM refunds r JOIN payments p ON p.id = r.payment_id ",
            $tail
        )
    };
}
pub(crate) use select_refunds;

#[async_trait]
impl RefundStore for SqlStore {
    async fn start_refund(
        &self,
        new: &NewRefund,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<RefundStart> {
        let mut tx = self.begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM orders WHERE id = $1")
            .bind(&new.order_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if exists.is_none() {
            tx.rollback().await?;
            return Ok(RefundStart::OrderMissing);
        }
        // Locked first: a concurrent request with the same key, or any other refund of this
        // order, waits here until this one has committed.
        let status = transitions::lock_order(&mut tx, &new.order_id).await?;
        let earlier = sqlx::query(select_refunds!(
            "WHERE r.client_scope = $1 AND r.client_key = $2"
        ))
        .bind(&new.client_scope)
        .bind(&new.client_key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        if let Some(row) = earlier {
            let hash: Option<String> = row.try_get("request_hash").map_err(unavailable)?;
            tx.rollback().await?;
            return Ok(if hash.as_deref() == Some(new.request_hash.as_str()) {
                RefundStart::Existing(refund_from_row(&row)?)
            } else {
                RefundStart::KeyReused
            });
        }
        let mut money = order_money(&mut tx, &new.order_id, status).await?;
        if !self.faults().is_on(Protection::RefundBound) {
            money.refunds_held_minor -= pending_refunds_minor(&mut tx, &new.order_id).await?;
        }
        let amount = match decide_refund(&money, new.requested_minor, new.restock) {
            Ok(amount) => amount,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(RefundStart::Refused(refusal));
            }
        };
        insert_requested(&mut tx, new, None, amount, actor, now).await?;
        let record = refund_in(&mut tx, &new.refund_id).await?;
        tx.commit().await?;
        Ok(RefundStart::Started(record))
    }

    async fn finish_refund(
        &self,
        refund_id: &str,
        outcome: &RefundOutcome,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<RefundRecord> {
        let mut tx = self.begin().await?;
        let order_id = refund_in(&mut tx, refund_id).await?.order_id;
        let order = transitions::lock_order(&mut tx, &order_id).await?;
        // Read again under the lock: a webhook may have moved it meanwhile.
        let before = refund_in(&mut tx, refund_id).await?;
        match outcome {
            RefundOutcome::Provider(reported) => {
                let payment_id: String =
                    sqlx::query_scalar("SELECT payment_id FROM refunds WHERE id = $1")
                        .bind(refund_id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                let mut reported = reported.clone();
                // The answer to our own call is about our row, whatever its metadata says.
                reported
                    .metadata
                    .retain(|(key, _)| key != "kassa_refund_id");
                reported
                    .metadata
                    .push(("kassa_refund_id".into(), refund_id.to_owned()));
                apply_report(
                    &mut tx,
                    &before.order_id,
                    &payment_id,
                    &reported,
                    actor,
                    now,
                )
                .await?;
            }
            // Only a pending refund fails on a refusal of Kassa's own call (a re-send after the
            // provider forgot the key, say); a success is reversed only by the provider's report.
            RefundOutcome::Refused(_) if before.status != RefundStatus::Pending => {}
            RefundOutcome::Refused(reason) => {
                let failed = RefundStatus::Failed;
                match transitions::refund(
                    &mut tx,
                    &before.order_id,
                    refund_id,
                    before.status,
                    failed,
                    actor,
                    now,
                )
                .await?
                {
                    Outcome::Moved(_) => {
                        sqlx::query("UPDATE refunds SET failure_reason = $2 WHERE id = $1")
                            .bind(refund_id)
                            .bind(reason)
                            .execute(&mut *tx)
                            .await
                            .map_err(unavailable)?;
                    }
                    // A webhook already settled it: its report stands.
                    Outcome::Refused(_) => {}
                }
            }
        }
        settle_order(&mut tx, &before.order_id, order, actor, now).await?;
        let record = refund_in(&mut tx, refund_id).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn refunds_of(&self, order_id: &str) -> StoreResult<Vec<RefundRecord>> {
        let rows = self
            .read_fetch_all(
                sqlx::query(select_refunds!(
                    "WHERE r.order_id = $1 ORDER BY r.created_at, r.id"
                ))
                .bind(order_id),
            )
            .await?;
        rows.iter().map(refund_from_row).collect()
    }

    async fn unsent_refunds(&self, before: i64, limit: i64) -> StoreResult<Vec<RefundRecord>> {
        let rows = self
            .read_fetch_all(
                sqlx::query(select_refunds!(
                    "WHERE r.status = 'pending' AND r.provider_refund_id IS NULL
               AND (r.created_at <= $1 OR r.client_scope = 'kassa')
             ORDER BY r.created_at, r.id LIMIT $2"
                ))
                .bind(before)
                .bind(limit),
            )
            .await?;
        rows.iter().map(refund_from_row).collect()
    }
}

/// Records a refund as pending, of `payment_id` or else the order's succeeded payment.
pub(crate) async fn insert_requested(
    conn: &mut AnyConnection,
    new: &NewRefund,
    payment_id: Option<&str>,
    amount: i64,
    actor: &Actor,
    now: i64,
) -> StoreResult<()> {
    let payment: Option<(String, String)> = sqlx::query_as(
        "SELECT id, currency FROM payments WHERE order_id = $1 AND status = 'succeeded' AND ($2 = '' OR id = $2)
         ORDER BY attempt DESC LIMIT 1",
    )
    .bind(&new.order_id)
    .bind(payment_id.unwrap_or_default())
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let (payment_id, currency) = payment.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "order {} is refundable but has no succeeded payment",
            new.order_id
        ))
    })?;
    sqlx::query(
        "INSERT INTO refunds (id, order_id, payment_id, amount, currency, status, reason, provider_idempotency_key,
             client_scope, client_key, request_hash, restock, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $12)",
    )
    .bind(&new.refund_id)
    .bind(&new.order_id)
    .bind(&payment_id)
    .bind(amount)
    .bind(&currency)
    .bind(new.reason.as_deref())
    .bind(&new.provider_idempotency_key)
    .bind(&new.client_scope)
    .bind(&new.client_key)
    .bind(&new.request_hash)
    .bind(i64::from(new.restock))
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    let detail = format!(
        "{amount} {currency}{}",
        if new.restock { ", restock" } else { "" }
    );
    let change = Change {
        entity_type: "refund",
        entity_id: &new.refund_id,
        action: "requested",
        before: None,
        after: Some("pending"),
        detail: Some(&detail),
    };
    audit::record(conn, change, actor, now).await
}

pub(crate) async fn refund_in(
    conn: &mut AnyConnection,
    refund_id: &str,
) -> StoreResult<RefundRecord> {
    let row = sqlx::query(select_refunds!("WHERE r.id = $1"))
        .bind(refund_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(unavailable)?;
    let row = row.ok_or_else(|| StoreError::Corrupt(format!("refund {refund_id} is missing")))?;
    refund_from_row(&row)
}

pub(crate) fn refund_from_row(row: &AnyRow) -> StoreResult<RefundRecord> {
    let status: String = row.try_get("status").map_err(unavailable)?;
    let restock: i64 = row.try_get("restock").map_err(unavailable)?;
    Ok(RefundRecord {
        id: row.try_get("id").map_err(unavailable)?,
        order_id: row.try_get("order_id").map_err(unavailable)?,
        payment_intent_id: row
            .try_get("provider_payment_intent_id")
            .map_err(unavailable)?,
        amount_minor: row.try_get("amount").map_err(unavailable)?,
        currency: row.try_get("currency").map_err(unavailable)?,
        status: RefundStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("refund status {status:?}")))?,
        reason: row.try_get("reason").map_err(unavailable)?,
        restock: restock != 0,
        provider_refund_id: row.try_get("provider_refund_id").map_err(unavailable)?,
        provider_idempotency_key: row
            .try_get("provider_idempotency_key")
            .map_err(unavailable)?,
        failure_reason: row.try_get("failure_reason").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
        of_destination_charge: row
            .try_get::<Option<String>, _>("destination_account")
            .map_err(unavailable)?
            .is_some(),
    })
}

/// What the order's refunds in flight hold; only the simulation's broken refund bound asks.
async fn pending_refunds_minor(conn: &mut AnyConnection, order_id: &str) -> StoreResult<i64> {
    sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM refunds
         WHERE order_id = $1 AND status = 'pending'",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(unavailable)
}
