//! The janitor's SQL (risks G4, G9, P9, D2): expired checkouts, extended holds, idle carts, and
//! the rows past their retention.

use async_trait::async_trait;
use kassa_app::ports::{Actor, JanitorStore, StoreResult};
use kassa_domain::commands::Operation;
use kassa_domain::order::OrderStatus;

use crate::audit::{self, Change};
use crate::commands::order_money;
use crate::db::{SqlStore, unavailable};
use crate::transitions;

#[async_trait]
impl JanitorStore for SqlStore {
    async fn expired_checkouts(&self, now: i64, limit: i64) -> StoreResult<Vec<String>> {
        let mut unit = self.read().await?;
        let found = sqlx::query_scalar(
            "SELECT o.id FROM orders o
             WHERE o.status IN ('pending_payment', 'requires_action')
               AND (o.pending_operation IS NULL OR o.pending_operation = 'expire')
               AND o.needs_attention IS NULL
               AND EXISTS (SELECT 1 FROM reservations r
                           WHERE r.order_id = o.id AND r.status = 'held' AND r.expires_at <= $1)
             ORDER BY o.created_at, o.id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        Ok(found)
    }

    async fn begin_expire(&self, order_id: &str, actor: &Actor, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let status = transitions::lock_order(&mut tx, order_id).await?;
        let money = order_money(&mut tx, order_id, status).await?;
        let awaiting = matches!(
            status,
            OrderStatus::PendingPayment | OrderStatus::RequiresAction
        );
        match (awaiting, money.pending_operation) {
            (true, Some(Operation::Expire)) => {
                tx.rollback().await?;
                Ok(true)
            }
            (true, None) => {
                sqlx::query(
                    "UPDATE orders SET pending_operation = 'expire', updated_at = $2
                     WHERE id = $1 AND pending_operation IS NULL",
                )
                .bind(order_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
                let change = Change {
                    entity_type: "order",
                    entity_id: order_id,
                    action: "expiry_started",
                    before: None,
                    after: Some("expire"),
                    detail: Some("the stock hold expired; canceling at the provider first"),
                };
                audit::record(&mut tx, change, actor, now).await?;
                tx.commit().await?;
                Ok(true)
            }
            _ => {
                tx.rollback().await?;
                Ok(false)
            }
        }
    }

    async fn extend_reservations(
        &self,
        order_id: &str,
        until: i64,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        transitions::lock_order(&mut tx, order_id).await?;
        let extended = sqlx::query(
            "UPDATE reservations SET expires_at = $2, updated_at = $3
             WHERE order_id = $1 AND status = 'held' AND expires_at < $2",
        )
        .bind(order_id)
        .bind(until)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        if extended > 0 {
            let detail = format!("held until {until}: a payment is in progress");
            let change = Change {
                entity_type: "order",
                entity_id: order_id,
                action: "hold_extended",
                before: None,
                after: None,
                detail: Some(&detail),
            };
            audit::record(&mut tx, change, actor, now).await?;
        }
        tx.commit().await?;
        Ok(extended)
    }

    async fn expire_carts(&self, before: i64, limit: i64) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let idle: Vec<String> = sqlx::query_scalar(
            "SELECT c.id FROM carts c
             WHERE c.updated_at <= $1 AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.cart_id = c.id)
             ORDER BY c.updated_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        for cart_id in &idle {
            for sql in [
                "DELETE FROM cart_lines WHERE cart_id = $1",
                "DELETE FROM carts WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM orders WHERE cart_id = $1)",
            ] {
                sqlx::query(sql)
                    .bind(cart_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
        }
        tx.commit().await?;
        Ok(u64::try_from(idle.len()).unwrap_or(u64::MAX))
    }

    // Each prune is one statement deleting a bounded batch, oldest first. The conditions are
    // repeated outside the subquery: PostgreSQL re-checks only those against a row changed
    // since the subquery's snapshot, so a key claimed by a retry, or a notification or event
    // replayed, meanwhile is not deleted.

    async fn prune_idempotency_keys(&self, before: i64, now: i64, limit: i64) -> StoreResult<u64> {
        let pruned = self
            .lone_execute(
                sqlx::query(
                    "DELETE FROM idempotency_keys
                     WHERE recovery_point IN ('started', 'finished') AND updated_at <= $1
                       AND (locked_until IS NULL OR locked_until <= $2)
                       AND (scope, idempotency_key) IN (
                           SELECT scope, idempotency_key FROM idempotency_keys
                           WHERE recovery_point IN ('started', 'finished') AND updated_at <= $1
                             AND (locked_until IS NULL OR locked_until <= $2)
                           ORDER BY updated_at LIMIT $3)",
                )
                .bind(before)
                .bind(now)
                .bind(limit),
            )
            .await?;
        Ok(pruned.rows_affected())
    }

    async fn prune_webhook_events(&self, before: i64, limit: i64) -> StoreResult<u64> {
        let pruned = self
            .lone_execute(
                sqlx::query(
                    "DELETE FROM webhook_events
                     WHERE status IN ('processed', 'ignored') AND received_at <= $1
                       AND id IN (
                           SELECT id FROM webhook_events
                           WHERE status IN ('processed', 'ignored') AND received_at <= $1
                           ORDER BY received_at LIMIT $2)",
                )
                .bind(before)
                .bind(limit),
            )
            .await?;
        Ok(pruned.rows_affected())
    }

    async fn prune_notifications(&self, before: i64, limit: i64) -> StoreResult<u64> {
        let pruned = self
            .lone_execute(
                sqlx::query(
                    "DELETE FROM outbox
                     WHERE status IN ('delivered', 'dead') AND created_at <= $1
                       AND id IN (
                           SELECT id FROM outbox
                           WHERE status IN ('delivered', 'dead') AND created_at <= $1
                           ORDER BY created_at LIMIT $2)",
                )
                .bind(before)
                .bind(limit),
            )
            .await?;
        Ok(pruned.rows_affected())
    }
}
