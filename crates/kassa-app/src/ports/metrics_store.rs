//! Counts for the operator's gauges, read from the database when `/metrics` is scraped, so
//! every instance reports the shared truth.

use async_trait::async_trait;

use super::store::StoreResult;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Webhook events by inbox status.
    pub inbox_by_status: Vec<(String, i64)>,
    /// Merchant notifications by status.
    pub outbox_by_status: Vec<(String, i64)>,
    /// Payments not final, by age: under 5 minutes, 5 minutes to an hour, over an hour.
    pub payments_in_motion_by_age: Vec<(&'static str, i64)>,
    /// Units held by reservations.
    pub reservations_held_units: i64,
    pub orders_needing_attention: i64,
    /// Orders flagged for a person, by their flag's reason code (`kassa_domain::attention`).
    pub attention_by_reason: Vec<(String, i64)>,
    /// Subscriptions with a paid period Kassa could not grant for (risk W6).
    pub subscriptions_needing_attention: i64,
    /// Orders with a capture, cancel or expiry in progress, by operation.
    pub pending_operations: Vec<(String, i64)>,
    /// Work due now, by queue (`inbox`, `outbox`), and how long the oldest has waited.
    pub due_by_queue: Vec<(&'static str, i64, i64)>,
    /// This instance's group commit, when on: the database's gauges are shared, these are not.
    pub group_commit: Option<GroupCommitCounts>,
}

/// Units of work committed and the batches (one commit, one fsync each) they shared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitCounts {
    pub units: u64,
    pub batches: u64,
}

#[async_trait]
pub trait MetricsStore: Send + Sync {
    async fn gauges(&self, now: i64) -> StoreResult<Gauges>;
}
