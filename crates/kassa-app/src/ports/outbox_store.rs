//! Storage for outgoing merchant notifications (the transactional outbox): rows written with the
//! change they announce, claimed for delivery with a lease, marked delivered, failed (retried
//! with backoff) or dead, listed and replayed by an operator.

use async_trait::async_trait;

use super::store::StoreResult;

/// `pending` → `delivered`; on error `failed` (retried) → `dead` after the maximum attempts; an
/// operator's replay puts a dead or failed one back to `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    Pending,
    Delivered,
    Failed,
    Dead,
}

impl NotificationStatus {
    pub const ALL: [NotificationStatus; 4] = [
        NotificationStatus::Pending,
        NotificationStatus::Delivered,
        NotificationStatus::Failed,
        NotificationStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Delivered => "delivered",
            NotificationStatus::Failed => "failed",
            NotificationStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<NotificationStatus> {
        NotificationStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Stable across retries: what a receiver deduplicates on.
    pub id: String,
    pub topic: String,
    /// The JSON the change wrote (`{"type", "order_id", …}`).
    pub payload: String,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Notifications due for an attempt, oldest first.
    async fn due_notifications(&self, now: i64, limit: i64) -> StoreResult<Vec<Notification>>;
    /// Takes one due notification for `lease_secs` (a compare-and-set on its next attempt time),
    /// so one instance sends it; false if another took it first.
    async fn claim_notification(&self, id: &str, lease_secs: i64, now: i64) -> StoreResult<bool>;
    async fn mark_delivered(&self, id: &str, now: i64) -> StoreResult<()>;
    /// `failed` with the next attempt after `backoff_secs`, or `dead` at `attempts_max`.
    async fn mark_notification_failed(
        &self,
        id: &str,
        error: &str,
        attempts_max: i64,
        backoff_secs: i64,
        now: i64,
    ) -> StoreResult<NotificationStatus>;
    async fn notifications(
        &self,
        status: NotificationStatus,
        limit: i64,
    ) -> StoreResult<Vec<Notification>>;
    /// A failed or dead notification back to `pending`, due now; false if it is neither.
    async fn replay_notification(&self, id: &str, now: i64) -> StoreResult<bool>;
}
