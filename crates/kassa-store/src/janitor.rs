//! The janitor's SQL (risks G4, G9, P9): expired checkouts, extended holds, idle carts.

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
}
