//! Retention (risk D2): how long the rows that serve only a retry or a diagnosis are kept before
//! the janitor prunes them, and which rows are never pruned.
//!
//! Pruned, each after its own retention: checkout idempotency keys that are finished or never
//! placed an order (a key at `order_created` is the completer's work and is kept), webhook
//! events the inbox processed or ignored (a `received`, `failed` or `dead` one is unfinished
//! business and is kept), and merchant notifications delivered or dead. Never pruned: orders,
//! their lines and reservations, payments, refunds, disputes, the credit ledger, subscriptions,
//! seller transfers and reversals, and the audit trail — the money's record is kept for ever.
//! The keys a refund, a subscription or a debit was asked for with live on those rows, so they
//! are kept with them.

use std::ops::RangeInclusive;

pub const DAY_SECS: i64 = 86_400;

/// Days each kind of prunable row is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A checkout's idempotency key, counted from its last use.
    pub idempotency_key_days: u32,
    /// A processed or ignored webhook event, counted from its receipt.
    pub webhook_event_days: u32,
    /// A delivered or dead merchant notification, counted from when it was written.
    pub notification_days: u32,
}

impl Retention {
    /// A week of keys (Stripe keeps its own for 24 hours; a client retrying later than a week
    /// is not retrying), 30 days of events (Stripe's own event retention) and notifications.
    pub const DEFAULT: Retention = Retention {
        idempotency_key_days: 7,
        webhook_event_days: 30,
        notification_days: 30,
    };

    /// At least a day: no key Kassa forgets is one Stripe still remembers for a retry of the
    /// same provider call.
    pub const IDEMPOTENCY_KEY_DAYS: RangeInclusive<u32> = 1..=3_650;
    /// At least 3 days: Stripe redelivers an event for up to 3 days, and a redelivery the inbox
    /// still holds is answered without applying anything.
    pub const WEBHOOK_EVENT_DAYS: RangeInclusive<u32> = 3..=3_650;
    /// At least a day, so a dead notification can be looked at and replayed.
    pub const NOTIFICATION_DAYS: RangeInclusive<u32> = 1..=3_650;

    /// The times before which each kind of row is old enough to prune, at `now`.
    pub fn cutoffs(&self, now: i64) -> Cutoffs {
        let before = |days: u32| now.saturating_sub(i64::from(days).saturating_mul(DAY_SECS));
        Cutoffs {
            idempotency_keys: before(self.idempotency_key_days),
            webhook_events: before(self.webhook_event_days),
            notifications: before(self.notification_days),
        }
    }
}

impl Default for Retention {
    fn default() -> Retention {
        Retention::DEFAULT
    }
}

/// A row whose time is at or before its cutoff may be pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub idempotency_keys: i64,
    pub webhook_events: i64,
    pub notifications: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_retention_counts_back_from_now_in_whole_days() {
        let retention = Retention {
            idempotency_key_days: 1,
            webhook_event_days: 3,
            notification_days: 30,
        };
        let now = 100 * DAY_SECS;
        assert_eq!(
            retention.cutoffs(now),
            Cutoffs {
                idempotency_keys: 99 * DAY_SECS,
                webhook_events: 97 * DAY_SECS,
                notifications: 70 * DAY_SECS,
            }
        );
        let far = Retention {
            idempotency_key_days: u32::MAX,
            ..retention
        };
        assert_eq!(
            far.cutoffs(0).idempotency_keys,
            -i64::from(u32::MAX) * DAY_SECS
        );
    }

    #[test]
    fn the_defaults_are_within_their_bounds() {
        let d = Retention::DEFAULT;
        assert!(Retention::IDEMPOTENCY_KEY_DAYS.contains(&d.idempotency_key_days));
        assert!(Retention::WEBHOOK_EVENT_DAYS.contains(&d.webhook_event_days));
        assert!(Retention::NOTIFICATION_DAYS.contains(&d.notification_days));
        assert_eq!(d, Retention::default());
    }
}
