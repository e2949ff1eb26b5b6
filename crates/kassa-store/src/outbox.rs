//! The transactional outbox: merchant notifications written in the same transaction as the
//! change they announce, at most once per business key. Callers write one only for a change that
//! happened. Delivery claims each with a lease, then marks it delivered, failed or dead.

use async_trait::async_trait;
use kassa_app::ports::{Notification, NotificationStatus, OutboxStore, StoreError, StoreResult};
use sqlx::AnyConnection;

use crate::db::{SqlStore, unavailable};

/// Queues a merchant notification at most once per (topic, order).
pub(crate) async fn notify(
    conn: &mut AnyConnection,
    topic: &str,
    order_id: &str,
    now: i64,
) -> StoreResult<()> {
    notify_about(conn, topic, order_id, order_id, now).await
}

/// Queues a notification about one payment attempt of an order (its charge), at most once per
/// (topic, attempt), with the provider's `decline_code` if it gave one.
pub(crate) async fn notify_attempt(
    conn: &mut AnyConnection,
    topic: &str,
    order_id: &str,
    attempt: &str,
    decline_code: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    let mut payload = serde_json::json!({ "type": topic, "order_id": order_id, "id": attempt });
    if let Some(code) = decline_code {
        payload["decline_code"] = serde_json::Value::from(code);
    }
    let business_key = format!("{topic}:{attempt}");
    queue(conn, topic, &business_key, &payload.to_string(), now).await
}

/// Queues `order.needs_attention` with the flag's reason code, at most once per (order,
/// episode): episode 0 has the plain (topic, order) key, so a first announcement keeps the id it
/// always had; an order flagged again after a person resolved it is announced again.
pub(crate) async fn notify_attention(
    conn: &mut AnyConnection,
    order_id: &str,
    episode: i64,
    reason: &str,
    now: i64,
) -> StoreResult<()> {
    let topic = "order.needs_attention";
    let business_key = if episode == 0 {
        format!("{topic}:{order_id}")
    } else {
        format!("{topic}:{order_id}:{episode}")
    };
    let payload = serde_json::json!({
        "type": topic, "order_id": order_id, "id": order_id, "reason": reason
    })
    .to_string();
    queue(conn, topic, &business_key, &payload, now).await
}

/// Queues a notification about `subject_id` (a refund, a dispute) of an order, at most once per
/// (topic, subject).
pub(crate) async fn notify_about(
    conn: &mut AnyConnection,
    topic: &str,
    order_id: &str,
    subject_id: &str,
    now: i64,
) -> StoreResult<()> {
    let business_key = format!("{topic}:{subject_id}");
    let payload =
        serde_json::json!({ "type": topic, "order_id": order_id, "id": subject_id }).to_string();
    queue(conn, topic, &business_key, &payload, now).await
}

/// Queues a notification about a subscription's invoice (there is no order), at most once per
/// (topic, invoice).
pub(crate) async fn notify_subscription(
    conn: &mut AnyConnection,
    topic: &str,
    subscription_id: &str,
    invoice_id: &str,
    reason: &str,
    now: i64,
) -> StoreResult<()> {
    let business_key = format!("{topic}:{invoice_id}");
    let payload = serde_json::json!({
        "type": topic, "subscription_id": subscription_id, "id": invoice_id, "reason": reason
    })
    .to_string();
    queue(conn, topic, &business_key, &payload, now).await
}

/// Writes the row, unless one with its business key exists.
async fn queue(
    conn: &mut AnyConnection,
    topic: &str,
    business_key: &str,
    payload: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox (id, topic, business_key, payload, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) ON CONFLICT (business_key) DO NOTHING",
    )
    .bind(format!("obx_{}", business_key.replace([':', '.'], "_")))
    .bind(topic)
    .bind(business_key)
    .bind(payload)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

fn notification_from_row(row: &sqlx::any::AnyRow) -> StoreResult<Notification> {
    use sqlx::Row;
    let status: String = row.try_get("status").map_err(unavailable)?;
    Ok(Notification {
        id: row.try_get("id").map_err(unavailable)?,
        topic: row.try_get("topic").map_err(unavailable)?,
        payload: row.try_get("payload").map_err(unavailable)?,
        status: NotificationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))?,
        attempts: row.try_get("attempts").map_err(unavailable)?,
        last_error: row.try_get("last_error").map_err(unavailable)?,
        created_at: row.try_get("created_at").map_err(unavailable)?,
    })
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn due_notifications(&self, now: i64, limit: i64) -> StoreResult<Vec<Notification>> {
        let rows = self.read_fetch_all(sqlx::query(
            "SELECT id, topic, payload, status, attempts, last_error, created_at FROM outbox
             WHERE status IN ('pending', 'failed') AND next_attempt_at <= $1
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit))
        .await?;
        rows.iter().map(notification_from_row).collect()
    }

    async fn claim_notification(&self, id: &str, lease_secs: i64, now: i64) -> StoreResult<bool> {
        let claimed = self
            .lone_execute(
                sqlx::query(
                    "UPDATE outbox SET next_attempt_at = $3
             WHERE id = $1 AND status IN ('pending', 'failed') AND next_attempt_at <= $2",
                )
                .bind(id)
                .bind(now)
                .bind(now + lease_secs),
            )
            .await?;
        Ok(claimed.rows_affected() == 1)
    }

    async fn mark_delivered(&self, id: &str, now: i64) -> StoreResult<()> {
        self.lone_execute(sqlx::query(
            "UPDATE outbox SET status = 'delivered', delivered_at = $2, attempts = attempts + 1, last_error = NULL
             WHERE id = $1 AND status IN ('pending', 'failed')",
        )
        .bind(id)
        .bind(now))
        .await?;
        Ok(())
    }

    async fn mark_notification_failed(
        &self,
        id: &str,
        error: &str,
        attempts_max: i64,
        backoff_secs: i64,
        now: i64,
    ) -> StoreResult<NotificationStatus> {
        let mut unit = self.autocommit().await?;
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE outbox
             SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3,
                 status = CASE WHEN attempts + 1 >= $4 THEN 'dead' ELSE 'failed' END
             WHERE id = $1 AND status IN ('pending', 'failed') RETURNING status",
        )
        .bind(id)
        .bind(error)
        .bind(now + backoff_secs)
        .bind(attempts_max)
        .fetch_optional(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        let status = status.unwrap_or_else(|| "delivered".into());
        NotificationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))
    }

    async fn notifications(
        &self,
        status: NotificationStatus,
        limit: i64,
    ) -> StoreResult<Vec<Notification>> {
        let mut unit = self.read().await?;
        let rows = sqlx::query(
            "SELECT id, topic, payload, status, attempts, last_error, created_at FROM outbox
             WHERE status = $1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(status.as_str())
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        rows.iter().map(notification_from_row).collect()
    }

    async fn replay_notification(&self, id: &str, now: i64) -> StoreResult<bool> {
        let mut unit = self.autocommit().await?;
        let replayed = sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $2
             WHERE id = $1 AND status IN ('failed', 'dead')",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(replayed.rows_affected() == 1)
    }
}
