//! The invariants of docs/risks.md that the database alone can show broken, each a query for what
//! breaks it. Constraints already refuse some outright (one order per cart, one live payment per
//! order, refunded ≤ captured, stock counters not negative); they are checked anyway, because a
//! checker that trusts the schema proves nothing about a database edited by hand.

use async_trait::async_trait;
use kassa_app::ports::{
    InvariantStore, InvoiceGrant, PaymentToCheck, StoreError, StoreResult, SubscriptionToCheck,
    Violation,
};
use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;
use sqlx::Row;

use crate::db::{SqlStore, unavailable};

/// (invariant, what is wrong, a query returning the ids involved as one text column).
const ID_CHECKS: &[(u8, &str, &str)] = &[
    (2, "a cart became more than one order",
     "SELECT cart_id FROM orders GROUP BY cart_id HAVING COUNT(*) > 1"),
    (2, "an order has more than one live payment",
     "SELECT order_id FROM payments WHERE status NOT IN ('canceled', 'failed') GROUP BY order_id HAVING COUNT(*) > 1"),
    (1, "an order counts as paid without a succeeded payment in its currency covering its total",
     "SELECT o.id FROM orders o WHERE o.status IN ('paid', 'partially_refunded', 'refunded')
        AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = 'succeeded'
                        AND p.currency = o.currency AND p.amount >= o.total)"),
    (1, "a paid order's captured amount is not what Kassa decided to capture",
     "SELECT id FROM orders WHERE status IN ('paid', 'partially_refunded', 'refunded')
        AND captured_amount <> CASE WHEN capture_amount IS NULL THEN total ELSE capture_amount END"),
    (4, "an order's refunded amount exceeds what was captured",
     "SELECT id FROM orders WHERE refunded_amount > captured_amount"),
    (4, "an order's refunded amount is not the sum of its succeeded refunds",
     "SELECT o.id FROM orders o WHERE o.refunded_amount <>
        (SELECT CAST(COALESCE(SUM(r.amount), 0) AS BIGINT) FROM refunds r WHERE r.order_id = o.id AND r.status = 'succeeded')"),
    (4, "an order's status says refunded without the money: its succeeded refunds do not cover it",
     "SELECT id FROM orders WHERE (status = 'refunded' AND refunded_amount < captured_amount)
        OR (status = 'partially_refunded' AND refunded_amount <= 0)"),
    (6, "a reservation is still held by an order that can no longer be paid",
     "SELECT r.id FROM reservations r JOIN orders o ON o.id = r.order_id
       WHERE r.status = 'held' AND o.status NOT IN ('pending_payment', 'requires_action', 'authorized')"),
    (5, "an order was paid more than once",
     "SELECT entity_id FROM audit_log WHERE entity_type = 'order' AND after_state = 'paid'
        AND before_state IN ('pending_payment', 'requires_action', 'authorized')
      GROUP BY entity_id HAVING COUNT(*) > 1"),
    (5, "a provider refund is recorded more than once",
     "SELECT provider_refund_id FROM refunds WHERE provider_refund_id IS NOT NULL
      GROUP BY provider_refund_id HAVING COUNT(*) > 1"),
    (5, "a notification exists more than once for one business event",
     "SELECT business_key FROM outbox GROUP BY business_key HAVING COUNT(*) > 1"),
    (7, "an order's status has no audit record",
     "SELECT o.id FROM orders o WHERE NOT EXISTS (SELECT 1 FROM audit_log a
        WHERE a.entity_type = 'order' AND a.entity_id = o.id AND a.after_state = o.status)"),
    (7, "a payment's status has no audit record",
     "SELECT p.id FROM payments p WHERE NOT EXISTS (SELECT 1 FROM audit_log a
        WHERE a.entity_type = 'payment' AND a.entity_id = p.id AND a.after_state = p.status)"),
    (7, "a refund's status has no audit record",
     "SELECT r.id FROM refunds r WHERE NOT EXISTS (SELECT 1 FROM audit_log a
        WHERE a.entity_type = 'refund' AND a.entity_id = r.id AND a.after_state = r.status)"),
    (8, "a customer's balance went below zero",
     "SELECT e.id FROM credit_entries e WHERE (SELECT SUM(f.amount) FROM credit_entries f
        WHERE f.customer_id = e.customer_id AND f.sequence <= e.sequence) < 0"),
    (8, "a paid credit-pack order has no grant of its credits × quantity",
     "SELECT o.id FROM orders o WHERE o.status IN ('paid', 'partially_refunded', 'refunded', 'disputed')
        AND (SELECT COALESCE(SUM(l.credits * l.quantity), 0) FROM order_lines l WHERE l.order_id = o.id) > 0
        AND NOT EXISTS (SELECT 1 FROM credit_entries e WHERE e.business_key = 'order:' || o.id
          AND e.amount = (SELECT SUM(l.credits * l.quantity) FROM order_lines l WHERE l.order_id = o.id))"),
    (8, "credits were granted for an order that was never paid",
     "SELECT e.id FROM credit_entries e WHERE e.business_key LIKE 'order:%' AND NOT EXISTS
        (SELECT 1 FROM orders o WHERE 'order:' || o.id = e.business_key
          AND o.status IN ('paid', 'partially_refunded', 'refunded', 'disputed'))"),
    (8, "a clawback has no grant to take back from",
     "SELECT c.id FROM credit_entries c WHERE c.kind = 'clawback' AND NOT EXISTS
        (SELECT 1 FROM credit_entries g WHERE g.kind = 'grant'
          AND c.business_key LIKE 'clawback:' || g.business_key || ':%')"),
    (8, "clawbacks took back more than their order granted",
     "SELECT g.id FROM credit_entries g WHERE g.kind = 'grant' AND g.business_key LIKE 'order:%'
        AND (SELECT COALESCE(-SUM(c.amount), 0) FROM credit_entries c WHERE c.kind = 'clawback'
               AND c.business_key LIKE 'clawback:' || g.business_key || ':%') > g.amount"),
    (8, "a refunded credit pack's credits were not all taken back nor recorded as spent",
     "SELECT o.id FROM orders o JOIN credit_entries g ON g.business_key = 'order:' || o.id
       WHERE g.kind = 'grant' AND o.refunded_amount > 0 AND o.captured_amount > 0
         AND (SELECT COALESCE(-SUM(c.amount), 0) FROM credit_entries c WHERE c.kind = 'clawback'
               AND c.business_key LIKE 'clawback:order:' || o.id || ':%') + o.credits_unrecovered
           < g.amount * o.refunded_amount / o.captured_amount"),
    (10, "a destination charge's platform fee is not between zero and the amount charged",
     "SELECT id FROM payments WHERE destination_account IS NOT NULL
        AND (application_fee IS NULL OR application_fee < 0 OR application_fee > amount)"),
    (11, "a seller's reversals took back more than their transfer",
     "SELECT t.order_id FROM seller_transfers t WHERE t.amount < (SELECT COALESCE(SUM(v.amount), 0)
        FROM transfer_reversals v WHERE v.order_id = t.order_id AND v.seller_id = t.seller_id)"),
    (11, "a seller's transfer was refused by the provider: the seller is still owed it",
     "SELECT order_id FROM seller_transfers WHERE refusal IS NOT NULL"),
    (7, "a subscription's status has no audit record",
     "SELECT s.id FROM subscriptions s WHERE NOT EXISTS (SELECT 1 FROM audit_log a
        WHERE a.entity_type = 'subscription' AND a.entity_id = s.id AND a.after_state = s.status)"),
    (7, "a reservation's status has no audit record",
     "SELECT r.id FROM reservations r WHERE NOT EXISTS (SELECT 1 FROM audit_log a
        WHERE a.entity_type = 'reservation' AND a.entity_id = r.id AND a.after_state = r.status)"),
];

/// Most ids listed for one broken rule.
const IDS_MAX: usize = 20;

impl SqlStore {
    /// Invariant 11: sellers left unpaid long after capture — a paid order with a seller's line
    /// whose transfers were neither planned nor recorded as held for a person (its flag, or an
    /// open dispute), or a transfer never sent.
    async fn unpaid_sellers(&self, stale_before: i64) -> StoreResult<Vec<Violation>> {
        let mut unit = self.read().await?;
        let unplanned: Vec<String> = sqlx::query_scalar(
            "SELECT p.order_id FROM payments p JOIN orders o ON o.id = p.order_id
             WHERE p.transfer_group IS NOT NULL AND p.status = 'succeeded'
               AND p.transfers_planned_at IS NULL AND p.transfers_held IS NULL
               AND o.status IN ('paid', 'partially_refunded', 'refunded') AND p.updated_at < $1
               AND EXISTS (SELECT 1 FROM order_lines l
                           WHERE l.order_id = o.id AND l.seller_id IS NOT NULL)",
        )
        .bind(stale_before)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        let unsent: Vec<String> = sqlx::query_scalar(
            "SELECT order_id FROM seller_transfers
             WHERE provider_transfer_id IS NULL AND refusal IS NULL AND updated_at < $1",
        )
        .bind(stale_before)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        let found = [
            (
                unplanned,
                "a paid order's sellers are owed money with neither a transfer planned nor a recorded hold",
            ),
            (unsent, "a seller's transfer was never sent"),
        ];
        Ok(found
            .into_iter()
            .filter(|(ids, _)| !ids.is_empty())
            .map(|(ids, what)| Violation {
                invariant: 11,
                ids: ids.into_iter().take(IDS_MAX).collect(),
                what: what.into(),
            })
            .collect())
    }
}

#[async_trait]
impl InvariantStore for SqlStore {
    async fn local_violations(&self, stale_before: i64) -> StoreResult<Vec<Violation>> {
        let mut violations = Vec::new();
        for (invariant, what, sql) in ID_CHECKS {
            let mut unit = self.read().await?;
            let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(*sql))
                .fetch_all(&mut *unit)
                .await
                .map_err(unavailable)?;
            unit.commit().await?;
            if !ids.is_empty() {
                violations.push(Violation {
                    invariant: *invariant,
                    ids: ids.into_iter().take(IDS_MAX).collect(),
                    what: (*what).to_owned(),
                });
            }
        }
        violations.extend(self.stock_violations().await?);
        let mut unit = self.read().await?;
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT o.id FROM orders o JOIN reservations r ON r.order_id = o.id
             WHERE o.status IN ('pending_payment', 'requires_action') AND o.needs_attention IS NULL
               AND r.status = 'held' AND r.expires_at < $1",
        )
        .bind(stale_before)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        if !stale.is_empty() {
            violations.push(Violation {
                invariant: 6,
                ids: stale.into_iter().take(IDS_MAX).collect(),
                what: "an unpaid checkout holds stock long after its hold expired".into(),
            });
        }
        violations.extend(self.unpaid_sellers(stale_before).await?);
        Ok(violations)
    }

    async fn payments_to_check(&self, limit: i64) -> StoreResult<Vec<PaymentToCheck>> {
        let mut unit = self.read().await?;
        let rows = sqlx::query(
            "SELECT p.id, p.order_id, p.provider_payment_intent_id, p.status AS payment_status, o.status AS order_status,
                    p.destination_account, p.application_fee,
                    (SELECT COUNT(*) FROM refunds r WHERE r.payment_id = p.id AND r.status = 'succeeded') AS refunds,
                    (SELECT CAST(COALESCE(SUM(r.amount), 0) AS BIGINT) FROM refunds r
                      WHERE r.payment_id = p.id AND r.status = 'succeeded') AS refunded
             FROM payments p JOIN orders o ON o.id = p.order_id
             WHERE p.provider_payment_intent_id IS NOT NULL
             ORDER BY p.created_at DESC, p.id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        rows.iter()
            .map(|row| {
                let order: String = row.try_get("order_status").map_err(unavailable)?;
                let payment: String = row.try_get("payment_status").map_err(unavailable)?;
                Ok(PaymentToCheck {
                    payment_id: row.try_get("id").map_err(unavailable)?,
                    order_id: row.try_get("order_id").map_err(unavailable)?,
                    payment_intent_id: row
                        .try_get("provider_payment_intent_id")
                        .map_err(unavailable)?,
                    order_status: OrderStatus::parse(&order)
                        .ok_or_else(|| StoreError::Corrupt(format!("order status {order:?}")))?,
                    payment_status: PaymentStatus::parse(&payment).ok_or_else(|| {
                        StoreError::Corrupt(format!("payment status {payment:?}"))
                    })?,
                    refunds_succeeded: (
                        row.try_get("refunds").map_err(unavailable)?,
                        row.try_get("refunded").map_err(unavailable)?,
                    ),
                    destination: crate::checkout::destination_of(row)?,
                })
            })
            .collect()
    }

    async fn subscriptions_to_check(&self, limit: i64) -> StoreResult<Vec<SubscriptionToCheck>> {
        let rows = self
            .read_fetch_all(
                sqlx::query(
                    "SELECT s.id, s.customer_id, s.provider_subscription_id, p.unit_amount,
                            p.currency, p.credits, s.needs_attention
                     FROM subscriptions s JOIN plans p ON p.id = s.plan_id
                     WHERE s.provider_subscription_id IS NOT NULL
                     ORDER BY s.created_at DESC, s.id LIMIT $1",
                )
                .bind(limit),
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SubscriptionToCheck {
                    subscription_id: row.try_get("id").map_err(unavailable)?,
                    customer_id: row.try_get("customer_id").map_err(unavailable)?,
                    provider_subscription_id: row
                        .try_get("provider_subscription_id")
                        .map_err(unavailable)?,
                    unit_amount_minor: row.try_get("unit_amount").map_err(unavailable)?,
                    currency: row.try_get("currency").map_err(unavailable)?,
                    credits_per_period: row.try_get("credits").map_err(unavailable)?,
                    needs_attention: row.try_get("needs_attention").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn invoice_grants(&self, subscription_id: &str) -> StoreResult<Vec<InvoiceGrant>> {
        let rows = self
            .read_fetch_all(
                sqlx::query(
                    "SELECT business_key, customer_id, amount FROM credit_entries
                     WHERE subscription_id = $1 AND kind = 'grant' AND business_key LIKE 'invoice:%'",
                )
                .bind(subscription_id),
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(InvoiceGrant {
                    business_key: row.try_get("business_key").map_err(unavailable)?,
                    customer_id: row.try_get("customer_id").map_err(unavailable)?,
                    amount: row.try_get("amount").map_err(unavailable)?,
                })
            })
            .collect()
    }
}

impl SqlStore {
    /// Invariant 3: every stock level's counters equal its reservations, and nothing is oversold.
    async fn stock_violations(&self) -> StoreResult<Vec<Violation>> {
        let mut unit = self.read().await?;
        let rows = sqlx::query(
            "SELECT l.sku, l.location, l.on_hand, l.reserved, l.committed,
                    (SELECT CAST(COALESCE(SUM(r.quantity), 0) AS BIGINT) FROM reservations r
                      WHERE r.sku = l.sku AND r.location = l.location AND r.status = 'held') AS held,
                    (SELECT CAST(COALESCE(SUM(r.quantity), 0) AS BIGINT) FROM reservations r
                      WHERE r.sku = l.sku AND r.location = l.location AND r.status = 'committed') AS sold
             FROM inventory_levels l ORDER BY l.sku, l.location",
        )
        .fetch_all(&mut *unit)
        .await
        .map_err(unavailable)?;
        unit.commit().await?;
        let mut violations = Vec::new();
        for row in &rows {
            let get = |name: &str| row.try_get::<i64, _>(name).map_err(unavailable);
            let (on_hand, reserved, committed) =
                (get("on_hand")?, get("reserved")?, get("committed")?);
            let (held, sold) = (get("held")?, get("sold")?);
            let sku: String = row.try_get("sku").map_err(unavailable)?;
            let location: String = row.try_get("location").map_err(unavailable)?;
            let mut wrong = Vec::new();
            if reserved != held {
                wrong.push(format!("reserved {reserved} but reservations hold {held}"));
            }
            if committed != sold {
                wrong.push(format!(
                    "committed {committed} but reservations sold {sold}"
                ));
            }
            if on_hand - reserved - committed < 0 || reserved < 0 || committed < 0 {
                wrong.push(format!(
                    "oversold: on hand {on_hand}, reserved {reserved}, committed {committed}"
                ));
            }
            if !wrong.is_empty() {
                violations.push(Violation {
                    invariant: 3,
                    ids: vec![format!("{sku}@{location}")],
                    what: wrong.join("; "),
                });
            }
        }
        Ok(violations)
    }
}
