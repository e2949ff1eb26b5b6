//! Merchant notifications from the outbox: each sent to every configured URL (by the edge's
//! [`Notifier`], which signs it the way Stripe signs), with an `id` that stays the same across
//! retries for receivers to deduplicate on. Failed deliveries are retried with backoff and
//! dead-lettered after [`NOTIFY_ATTEMPTS_MAX`]; an operator lists and replays them.

use async_trait::async_trait;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{Notification, NotificationStatus};

/// Attempts before a notification is dead-lettered.
pub const NOTIFY_ATTEMPTS_MAX: i64 = 10;
/// First retry delay; doubles per attempt up to [`NOTIFY_BACKOFF_MAX_SECS`].
const NOTIFY_BACKOFF_BASE_SECS: i64 = 5;
const NOTIFY_BACKOFF_MAX_SECS: i64 = 3_600;
/// How long one instance holds a notification it is sending.
const NOTIFY_LEASE_SECS: i64 = 60;
/// Most notifications listed for an operator at once.
pub const NOTIFICATIONS_LIST_MAX: i64 = 100;

/// Sends one notification to one URL, signed; `Err` says why it was not taken (a non-2xx
/// answer, no answer). Implemented over HTTP at the edge (`KASSA_NOTIFY_SECRET` signs).
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn deliver(&self, url: &str, notification: &Notification) -> Result<(), String>;
}

fn backoff_secs(attempts_so_far: i64) -> i64 {
    let exponent = u32::try_from(attempts_so_far.clamp(0, 20)).unwrap_or(20);
    NOTIFY_BACKOFF_BASE_SECS
        .saturating_mul(2i64.saturating_pow(exponent))
        .min(NOTIFY_BACKOFF_MAX_SECS)
}

impl App {
    /// Sends the due notifications to every URL; returns how many were delivered. One failing
    /// never stops the others.
    pub async fn deliver_notifications(
        &self,
        notifier: &dyn Notifier,
        urls: &[String],
        batch_max: i64,
    ) -> AppResult<usize> {
        if urls.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now_secs();
        let mut delivered = 0;
        for notification in self.store.due_notifications(now, batch_max).await? {
            if !self
                .store
                .claim_notification(&notification.id, NOTIFY_LEASE_SECS, now)
                .await?
            {
                continue;
            }
            let mut refused = Vec::new();
            for url in urls {
                if let Err(reason) = notifier.deliver(url, &notification).await {
                    refused.push(format!("{url}: {reason}"));
                }
            }
            let now = self.clock.now_secs();
            if refused.is_empty() {
                self.store.mark_delivered(&notification.id, now).await?;
                delivered += 1;
            } else {
                let error = refused.join("; ");
                let backoff = backoff_secs(notification.attempts);
                let status = self
                    .store
                    .mark_notification_failed(
                        &notification.id,
                        &error,
                        NOTIFY_ATTEMPTS_MAX,
                        backoff,
                        now,
                    )
                    .await?;
                if status == NotificationStatus::Dead {
                    tracing::error!(id = %notification.id, %error, "notification dead-lettered");
                }
            }
        }
        Ok(delivered)
    }

    pub async fn notifications(&self, status: NotificationStatus) -> AppResult<Vec<Notification>> {
        Ok(self
            .store
            .notifications(status, NOTIFICATIONS_LIST_MAX)
            .await?)
    }

    /// An operator's replay of a failed or dead notification: due again now.
    pub async fn replay_notification(&self, id: &str) -> AppResult<()> {
        if self
            .store
            .replay_notification(id, self.clock.now_secs())
            .await?
        {
            Ok(())
        } else {
            Err(AppError::InvalidState {
                message: "only a failed or dead notification can be replayed (or no such id)"
                    .into(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_w4_notification_backoff_grows_and_is_capped() {
        assert_eq!(backoff_secs(0), 5);
        assert_eq!(backoff_secs(2), 20);
        assert_eq!(backoff_secs(30), NOTIFY_BACKOFF_MAX_SECS);
    }
}
