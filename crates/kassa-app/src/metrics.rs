//! What Kassa tells its operator through `/metrics` (Prometheus text, rendered at the edge): the
//! counters and histograms recorded as things happen (checkouts by result, provider call latency,
//! webhook lag), and gauges read from the database when scraped (inbox and outbox depth, payments
//! in motion by age, reservations held, orders needing attention, operations in progress, due
//! work and its lag), and the payment provider breaker's state (`kassa_stripe_breaker_open`, from
//! memory). Names carry units last, as the rest of the code does.

use kassa_domain::attention::AttentionReason;

use crate::App;
use crate::error::AppResult;

/// A whole count as a gauge value; counts never come near the 2^53 where f64 loses precision.
fn value(count: i64) -> f64 {
    count as f64
}

impl App {
    /// Sets every gauge from the database's counts now.
    pub async fn record_gauges(&self) -> AppResult<()> {
        // From memory, not the database: set first, so a scrape during a database outage still
        // shows whether Stripe is being spared.
        metrics::gauge!("kassa_stripe_breaker_open").set(if self.breaker.is_open() {
            1.0
        } else {
            0.0
        });
        let gauges = self.store.gauges(self.clock.now_secs()).await?;
        for (status, count) in gauges.inbox_by_status {
            metrics::gauge!("kassa_webhook_events", "status" => status).set(value(count));
        }
        for (status, count) in gauges.outbox_by_status {
            metrics::gauge!("kassa_notifications", "status" => status).set(value(count));
        }
        for (age, count) in gauges.payments_in_motion_by_age {
            metrics::gauge!("kassa_payments_in_motion", "age" => age).set(value(count));
        }
        metrics::gauge!("kassa_reservations_held_units").set(value(gauges.reservations_held_units));
        // Every reason Kassa flags for is reported, at 0 when no order has it, so a count that
        // falls to nothing shows as 0 rather than as its last value.
        let mut by_reason: Vec<(String, i64)> = AttentionReason::all()
            .into_iter()
            .map(|reason| (reason.code(), 0))
            .collect();
        for (code, count) in gauges.attention_by_reason {
            match by_reason.iter_mut().find(|(known, _)| *known == code) {
                Some(known) => known.1 = count,
                None => by_reason.push((code, count)),
            }
        }
        for (reason, count) in by_reason {
            metrics::gauge!("kassa_orders_needing_attention", "reason" => reason).set(value(count));
        }
        metrics::gauge!("kassa_subscriptions_needing_attention")
            .set(value(gauges.subscriptions_needing_attention));
        for (operation, count) in gauges.pending_operations {
            metrics::gauge!("kassa_operations_in_progress", "operation" => operation)
                .set(value(count));
        }
        for (queue, due, lag_secs) in gauges.due_by_queue {
            metrics::gauge!("kassa_work_due", "queue" => queue).set(value(due));
            metrics::gauge!("kassa_work_lag_seconds", "queue" => queue).set(value(lag_secs));
        }
        if let Some(group) = gauges.group_commit {
            metrics::counter!("kassa_group_commit_units_total").absolute(group.units);
            metrics::counter!("kassa_group_commit_batches_total").absolute(group.batches);
        }
        Ok(())
    }
}

/// Counts a checkout request by how it ended.
pub(crate) fn count_checkout(result: &'static str) {
    metrics::counter!("kassa_checkouts_total", "result" => result).increment(1);
}

/// Records how long after the provider created it an event reached Kassa.
pub(crate) fn record_webhook_lag(now_secs: i64, created_secs: i64) {
    if created_secs > 0 {
        metrics::histogram!("kassa_webhook_lag_seconds")
            .record(value((now_secs - created_secs).max(0)));
    }
}
