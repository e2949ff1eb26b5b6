//! The webhook inbox, keyed by the provider's event id: recording, the one transaction that
//! claims an event and applies its effects (the "already processed?" check is its first
//! statement, risks W2, W3), failures with backoff, dead letters and replay.

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, Applied, EventEffect, EventStatus, InboxEvent, ProviderCheckoutSession,
    ProviderPaymentIntent, Recorded, StoreError, StoreResult, WebhookStore,
};
use kassa_domain::payment::PaymentStatus;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::{SqlStore, unavailable};
use crate::effects;

#[async_trait]
impl WebhookStore for SqlStore {
    async fn record_event(
        &self,
        id: &str,
        event_type: &str,
        payload: &str,
        now: i64,
    ) -> StoreResult<Recorded> {
        let inserted = self.lone_execute(sqlx::query(
            "INSERT INTO webhook_events (id, event_type, payload, status, attempts, next_attempt_at, received_at)
             VALUES ($1, $2, $3, 'received', 0, $4, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(event_type)
        .bind(payload)
        .bind(now))
        .await?;
        Ok(if inserted.rows_affected() == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    async fn inbox_event(&self, id: &str) -> StoreResult<Option<InboxEvent>> {
        let row = self.read_fetch_optional(sqlx::query(
            "SELECT id, event_type, status, attempts, last_error, payload, received_at FROM webhook_events WHERE id = $1",
        )
        .bind(id))
        .await?;
        row.as_ref().map(inbox_from_row).transpose()
    }

    async fn apply_event(
        &self,
        event_id: &str,
        effect: &EventEffect,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        let mut tx = self.begin().await?;
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
            tx.rollback().await?;
            return Ok(Applied::AlreadyProcessed);
        }
        let applied = effects::apply(self, &mut tx, effect, actor, now).await?;
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
        tx.commit().await?;
        Ok(applied)
    }

    async fn observe_payment_intent(
        &self,
        intent: &ProviderPaymentIntent,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        let mut tx = self.begin().await?;
        let applied = effects::payment::observe(self, &mut tx, intent, None, actor, now).await?;
        tx.commit().await?;
        Ok(applied)
    }

    async fn observe_checkout_session(
        &self,
        session: &ProviderCheckoutSession,
        reports: Option<PaymentStatus>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied> {
        let mut tx = self.begin().await?;
        let applied =
            effects::session::observe(self, &mut tx, session, reports, actor, now).await?;
        tx.commit().await?;
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
        let mut unit = self.autocommit().await?;
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
        .fetch_optional(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        let status = status.unwrap_or_else(|| "processed".into());
        EventStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("inbox status {status:?}")))
    }

    async fn due_events(&self, limit: i64, now: i64) -> StoreResult<Vec<String>> {
        let mut unit = self.read().await?;
        let found = sqlx::query_scalar(
            "SELECT id FROM webhook_events WHERE status IN ('received', 'failed') AND next_attempt_at <= $1
             ORDER BY received_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(found)
    }

    async fn inbox_events_with_status(
        &self,
        status: EventStatus,
        limit: i64,
    ) -> StoreResult<Vec<InboxEvent>> {
        let mut unit = self.read().await?;
        let rows = sqlx::query(
            "SELECT id, event_type, status, attempts, last_error, payload, received_at FROM webhook_events
             WHERE status = $1 ORDER BY received_at, id LIMIT $2",
        )
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        rows.iter().map(inbox_from_row).collect()
    }

    async fn replay_event(&self, event_id: &str, now: i64) -> StoreResult<bool> {
        let mut unit = self.autocommit().await?;
        let replayed = sqlx::query(
            "UPDATE webhook_events SET status = 'received', attempts = 0, next_attempt_at = $2
             WHERE id = $1 AND status IN ('failed', 'dead')",
        )
        .bind(event_id)
        .bind(now)
        .execute(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
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
