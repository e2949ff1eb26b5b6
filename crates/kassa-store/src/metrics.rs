//! The counts behind the operator's gauges.

use async_trait::async_trait;
use kassa_app::ports::{Gauges, GroupCommitCounts, MetricsStore, StoreResult};

use crate::db::{SqlStore, unavailable};

impl SqlStore {
    async fn counts_by(&self, sql: &'static str) -> StoreResult<Vec<(String, i64)>> {
        let mut unit = self.read().await?;
        let found = sqlx::query_as(sql)
            .fetch_all(&mut *unit)
            .await
            .map_err(unavailable)?;
        unit.commit().await?;
        Ok(found)
    }

    async fn count(&self, sql: &'static str, now: i64) -> StoreResult<i64> {
        let mut unit = self.read().await?;
        let found = sqlx::query_scalar(sql)
            .bind(now)
            .fetch_one(&mut *unit)
            .await
            .map_err(unavailable)?;
        unit.commit().await?;
        Ok(found)
    }

    /// (how many are due, age in seconds of the oldest due).
    async fn due(&self, sql: &'static str, now: i64) -> StoreResult<(i64, i64)> {
        let mut unit = self.read().await?;
        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(sql)
            .bind(now)
            .fetch_one(&mut *unit)
            .await
            .map_err(unavailable)?;
        unit.commit().await?;
        Ok((count, oldest.map_or(0, |since| (now - since).max(0))))
    }
}

#[async_trait]
impl MetricsStore for SqlStore {
    async fn gauges(&self, now: i64) -> StoreResult<Gauges> {
        let (inbox_due, inbox_lag) = self
            .due(
                "SELECT COUNT(*), MIN(next_attempt_at) FROM webhook_events
                 WHERE status IN ('received', 'failed') AND next_attempt_at <= $1",
                now,
            )
            .await?;
        let (outbox_due, outbox_lag) = self
            .due(
                "SELECT COUNT(*), MIN(next_attempt_at) FROM outbox
                 WHERE status IN ('pending', 'failed') AND next_attempt_at <= $1",
                now,
            )
            .await?;
        Ok(Gauges {
            inbox_by_status: self
                .counts_by("SELECT status, COUNT(*) FROM webhook_events GROUP BY status")
                .await?,
            outbox_by_status: self
                .counts_by("SELECT status, COUNT(*) FROM outbox GROUP BY status")
                .await?,
            payments_in_motion_by_age: vec![
                ("under_5m", self.count(
                    "SELECT COUNT(*) FROM payments WHERE status IN ('creating', 'requires_payment_method', 'requires_action', 'processing', 'requires_capture') AND created_at > $1 - 300",
                    now,
                ).await?),
                ("5m_to_1h", self.count(
                    "SELECT COUNT(*) FROM payments WHERE status IN ('creating', 'requires_payment_method', 'requires_action', 'processing', 'requires_capture') AND created_at <= $1 - 300 AND created_at > $1 - 3600",
                    now,
                ).await?),
                ("over_1h", self.count(
                    "SELECT COUNT(*) FROM payments WHERE status IN ('creating', 'requires_payment_method', 'requires_action', 'processing', 'requires_capture') AND created_at <= $1 - 3600",
                    now,
                ).await?),
            ],
            reservations_held_units: self
                .count(
                    "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM reservations WHERE status = 'held' AND $1 = $1",
                    now,
                )
                .await?,
            orders_needing_attention: self
                .count("SELECT COUNT(*) FROM orders WHERE needs_attention IS NOT NULL AND $1 = $1", now)
                .await?,
            attention_by_reason: self
                .counts_by(
                    "SELECT attention_reason, COUNT(*) FROM orders WHERE attention_reason IS NOT NULL
                     GROUP BY attention_reason",
                )
                .await?,
            subscriptions_needing_attention: self
                .count(
                    "SELECT COUNT(*) FROM subscriptions WHERE needs_attention IS NOT NULL AND $1 = $1",
                    now,
                )
                .await?,
            pending_operations: self
                .counts_by(
                    "SELECT pending_operation, COUNT(*) FROM orders WHERE pending_operation IS NOT NULL GROUP BY pending_operation",
                )
                .await?,
            due_by_queue: vec![("inbox", inbox_due, inbox_lag), ("outbox", outbox_due, outbox_lag)],
            group_commit: self.commit_stats().map(|stats| GroupCommitCounts {
                units: stats.units,
                batches: stats.batches,
            }),
        })
    }
}
