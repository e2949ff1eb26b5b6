//! The transactional outbox: merchant notifications written in the same transaction as the
//! change they announce, at most once per (topic, order). Callers write one only for a change
//! that happened.

use kassa_app::ports::StoreResult;
use sqlx::AnyConnection;

use crate::db::unavailable;

/// Queues a merchant notification at most once per (topic, order).
pub(crate) async fn notify(
    conn: &mut AnyConnection,
    topic: &str,
    order_id: &str,
    now: i64,
) -> StoreResult<()> {
    notify_about(conn, topic, order_id, order_id, now).await
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
