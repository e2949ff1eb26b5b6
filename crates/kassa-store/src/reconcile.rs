//! Reconciliation's reads: payments and refunds still in motion, and named cursors.

use async_trait::async_trait;
use kassa_app::ports::{
    PageInMotion, PaymentInMotion, ReconcileStore, RefundRecord, StoreError, StoreResult,
};
use kassa_domain::payment::PaymentStatus;
use sqlx::Row;

use crate::db::{SqlStore, unavailable};
use crate::refunds::{refund_from_row, select_refunds};

fn status_of(text: &str) -> StoreResult<PaymentStatus> {
    PaymentStatus::parse(text)
        .ok_or_else(|| StoreError::Corrupt(format!("payment status {text:?}")))
}

#[async_trait]
impl ReconcileStore for SqlStore {
    async fn payments_in_motion(&self, limit: i64) -> StoreResult<Vec<PaymentInMotion>> {
        let rows = self.read_fetch_all(sqlx::query(
            "SELECT id, order_id, provider_payment_intent_id, status FROM payments
             WHERE provider_payment_intent_id IS NOT NULL
               AND status IN ('creating', 'requires_payment_method', 'requires_action', 'processing', 'requires_capture')
             ORDER BY updated_at, id LIMIT $1",
        )
        .bind(limit))
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status").map_err(unavailable)?;
                Ok(PaymentInMotion {
                    payment_id: row.try_get("id").map_err(unavailable)?,
                    order_id: row.try_get("order_id").map_err(unavailable)?,
                    payment_intent_id: row
                        .try_get("provider_payment_intent_id")
                        .map_err(unavailable)?,
                    status: status_of(&status)?,
                })
            })
            .collect()
    }

    async fn pages_in_motion(&self, limit: i64) -> StoreResult<Vec<PageInMotion>> {
        let rows = self
            .read_fetch_all(
                sqlx::query(
                    "SELECT id, order_id, provider_checkout_session_id FROM payments
             WHERE provider_checkout_session_id IS NOT NULL AND provider_payment_intent_id IS NULL
               AND status IN ('creating', 'requires_payment_method')
             ORDER BY updated_at, id LIMIT $1",
                )
                .bind(limit),
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(PageInMotion {
                    payment_id: row.try_get("id").map_err(unavailable)?,
                    order_id: row.try_get("order_id").map_err(unavailable)?,
                    checkout_session_id: row
                        .try_get("provider_checkout_session_id")
                        .map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn payment_status(&self, payment_id: &str) -> StoreResult<Option<PaymentStatus>> {
        let mut unit = self.read().await?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
                .bind(payment_id)
                .fetch_optional(&mut *unit)
                .await
                .map_err(unavailable)?;
        unit.commit().await?;
        status.as_deref().map(status_of).transpose()
    }

    async fn refunds_in_motion(&self, limit: i64) -> StoreResult<Vec<RefundRecord>> {
        let mut unit = self.read().await?;
        let rows = sqlx::query(select_refunds!(
            "WHERE r.status = 'pending' AND r.provider_refund_id IS NOT NULL ORDER BY r.updated_at, r.id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        rows.iter().map(refund_from_row).collect()
    }

    async fn cursor(&self, name: &str) -> StoreResult<Option<i64>> {
        let mut unit = self.read().await?;
        let found = sqlx::query_scalar("SELECT value FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *unit)
            .await
            .map_err(unavailable)?;
        unit.commit().await?;
        Ok(found)
    }

    async fn set_cursor(&self, name: &str, value: i64, now: i64) -> StoreResult<()> {
        let mut unit = self.autocommit().await?;
        sqlx::query(
            "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = $2, updated_at = $3",
        )
        .bind(name)
        .bind(value)
        .bind(now)
        .execute(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(())
    }
}
