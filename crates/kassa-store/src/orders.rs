//! Reading orders with their lines, latest payment attempt and audit trail.

use async_trait::async_trait;
use kassa_app::ports::{
    Actor, AuditRecord, CaptureMethod, DisputeRecord, HostedPayment, OrderFilter, OrderLine,
    OrderRecord, OrderStore, OrderSummary, PaymentRecord, ShippingAddress, StoreError, StoreResult,
};
use kassa_domain::Money;
use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::catalog::currency_of;
use crate::db::{SqlStore, unavailable};

#[async_trait]
impl OrderStore for SqlStore {
    async fn order(&self, id: &str) -> StoreResult<Option<OrderRecord>> {
        let mut unit = self.read().await?;
        let row = sqlx::query(
            "SELECT id, cart_id, status, currency, subtotal, total, captured_amount, refunded_amount, capture_method,
                    email, shipping_name, shipping_line1, shipping_city, shipping_postal_code, shipping_country,
                    needs_attention, created_at, dispute_lost_amount
             FROM orders WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *unit)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else {
            unit.commit().await?;
            return Ok(None);
        };
        let mut order = order_from_row(&row)?;
        order.lines = lines_of(&mut unit, id).await?;
        order.payment = latest_payment(&mut unit, id).await?;
        order.disputes = disputes_of(&mut unit, id).await?;
        unit.commit().await?;
        order.refunds = kassa_app::ports::RefundStore::refunds_of(self, id).await?;
        Ok(Some(order))
    }

    async fn order_id_for_checkout_session(&self, session_id: &str) -> StoreResult<Option<String>> {
        let row = self
            .read_fetch_optional(
                sqlx::query(
                    "SELECT order_id FROM payments WHERE provider_checkout_session_id = $1",
                )
                .bind(session_id),
            )
            .await?;
        row.map(|row| row.try_get("order_id").map_err(unavailable))
            .transpose()
    }

    async fn order_events(&self, order_id: &str) -> StoreResult<Vec<AuditRecord>> {
        let rows = self.read_fetch_all(sqlx::query(
            "SELECT entity_type, entity_id, action, actor, request_id, client_ip, before_state, after_state, detail, created_at
             FROM audit_log
             WHERE (entity_type = 'order' AND entity_id = $1)
                OR (entity_type = 'payment' AND entity_id IN (SELECT id FROM payments WHERE order_id = $1))
                OR (entity_type = 'reservation' AND entity_id IN (SELECT id FROM reservations WHERE order_id = $1))
                OR (entity_type = 'refund' AND entity_id IN (SELECT id FROM refunds WHERE order_id = $1))
                OR (entity_type = 'dispute' AND entity_id IN (SELECT id FROM disputes WHERE order_id = $1))
             ORDER BY seq",
        )
        .bind(order_id))
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    entity_type: row.try_get("entity_type").map_err(unavailable)?,
                    entity_id: row.try_get("entity_id").map_err(unavailable)?,
                    action: row.try_get("action").map_err(unavailable)?,
                    actor: row.try_get("actor").map_err(unavailable)?,
                    request_id: row.try_get("request_id").map_err(unavailable)?,
                    client_ip: row.try_get("client_ip").map_err(unavailable)?,
                    before_state: row.try_get("before_state").map_err(unavailable)?,
                    after_state: row.try_get("after_state").map_err(unavailable)?,
                    detail: row.try_get("detail").map_err(unavailable)?,
                    created_at: row.try_get("created_at").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn orders_matching(
        &self,
        filter: OrderFilter,
        limit: i64,
    ) -> StoreResult<Vec<OrderSummary>> {
        let (status, attention) = match filter {
            OrderFilter::Status(status) => (status.as_str(), 0),
            OrderFilter::NeedsAttention => ("", 1),
        };
        let rows = self.read_fetch_all(sqlx::query(
            "SELECT id, status, currency, total, needs_attention, pending_operation, created_at FROM orders
             WHERE (status = $1 OR $1 = '') AND ($2 = 0 OR needs_attention IS NOT NULL)
             ORDER BY created_at DESC, id LIMIT $3",
        )
        .bind(status)
        .bind(attention)
        .bind(limit))
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status").map_err(unavailable)?;
                let currency =
                    currency_of(&row.try_get::<String, _>("currency").map_err(unavailable)?)?;
                Ok(OrderSummary {
                    id: row.try_get("id").map_err(unavailable)?,
                    status: OrderStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("order status {status:?}")))?,
                    total: Money::new(row.try_get("total").map_err(unavailable)?, currency),
                    needs_attention: row.try_get("needs_attention").map_err(unavailable)?,
                    pending_operation: row.try_get("pending_operation").map_err(unavailable)?,
                    created_at: row.try_get("created_at").map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn flag_order(
        &self,
        order_id: &str,
        reason: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        self.flag_order_now(order_id, reason, actor, now).await
    }
}

impl SqlStore {
    async fn flag_order_now(
        &self,
        order_id: &str,
        reason: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        crate::effects::flag_order(&mut tx, order_id, reason, actor, now).await?;
        tx.commit().await
    }
}

async fn disputes_of(conn: &mut AnyConnection, order_id: &str) -> StoreResult<Vec<DisputeRecord>> {
    let rows = sqlx::query(
        "SELECT id, amount, currency, reason, status, evidence_due_by FROM disputes
         WHERE order_id = $1 ORDER BY created_at, id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            Ok(DisputeRecord {
                id: row.try_get("id").map_err(unavailable)?,
                amount_minor: row.try_get("amount").map_err(unavailable)?,
                currency: row.try_get("currency").map_err(unavailable)?,
                reason: row.try_get("reason").map_err(unavailable)?,
                status: row.try_get("status").map_err(unavailable)?,
                evidence_due_by: row.try_get("evidence_due_by").map_err(unavailable)?,
            })
        })
        .collect()
}

fn order_from_row(row: &AnyRow) -> StoreResult<OrderRecord> {
    let get_i64 = |name: &str| row.try_get::<i64, _>(name).map_err(unavailable);
    let get_text = |name: &str| row.try_get::<String, _>(name).map_err(unavailable);
    let currency = currency_of(&get_text("currency")?)?;
    let status = get_text("status")?;
    let capture = get_text("capture_method")?;
    Ok(OrderRecord {
        id: get_text("id")?,
        cart_id: get_text("cart_id")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("order status {status:?}")))?,
        subtotal: Money::new(get_i64("subtotal")?, currency),
        total: Money::new(get_i64("total")?, currency),
        captured_amount_minor: get_i64("captured_amount")?,
        refunded_amount_minor: get_i64("refunded_amount")?,
        capture_method: CaptureMethod::parse(&capture)
            .ok_or_else(|| StoreError::Corrupt(format!("capture method {capture:?}")))?,
        email: get_text("email")?,
        shipping: ShippingAddress {
            name: get_text("shipping_name")?,
            line1: get_text("shipping_line1")?,
            city: get_text("shipping_city")?,
            postal_code: get_text("shipping_postal_code")?,
            country: get_text("shipping_country")?,
        },
        needs_attention: row.try_get("needs_attention").map_err(unavailable)?,
        created_at: get_i64("created_at")?,
        lines: Vec::new(),
        payment: None,
        refunds: Vec::new(),
        disputes: Vec::new(),
        dispute_lost_minor: row.try_get("dispute_lost_amount").map_err(unavailable)?,
    })
}

pub(crate) async fn lines_of(
    conn: &mut AnyConnection,
    order_id: &str,
) -> StoreResult<Vec<OrderLine>> {
    let rows = sqlx::query(
        "SELECT sku, product_name, quantity, unit_amount, amount FROM order_lines WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    rows.iter()
        .map(|row| {
            Ok(OrderLine {
                sku: row.try_get("sku").map_err(unavailable)?,
                product_name: row.try_get("product_name").map_err(unavailable)?,
                quantity: row.try_get("quantity").map_err(unavailable)?,
                unit_amount_minor: row.try_get("unit_amount").map_err(unavailable)?,
                amount_minor: row.try_get("amount").map_err(unavailable)?,
            })
        })
        .collect()
}

async fn latest_payment(
    conn: &mut AnyConnection,
    order_id: &str,
) -> StoreResult<Option<PaymentRecord>> {
    let row = sqlx::query(
        "SELECT id, status, amount, currency, provider_payment_intent_id, client_secret, last_error,
                flow, provider_checkout_session_id, checkout_url, checkout_expires_at
         FROM payments WHERE order_id = $1 ORDER BY attempt DESC LIMIT 1",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get("status").map_err(unavailable)?;
    let currency: String = row.try_get("currency").map_err(unavailable)?;
    let flow: String = row.try_get("flow").map_err(unavailable)?;
    let hosted = if flow == "hosted" {
        let expires_at: Option<i64> = row.try_get("checkout_expires_at").map_err(unavailable)?;
        let expires_at = expires_at.ok_or_else(|| {
            StoreError::Corrupt(format!("hosted payment of {order_id} without expiry"))
        })?;
        Some(HostedPayment {
            session_id: row
                .try_get("provider_checkout_session_id")
                .map_err(unavailable)?,
            url: row.try_get("checkout_url").map_err(unavailable)?,
            expires_at,
        })
    } else {
        None
    };
    Ok(Some(PaymentRecord {
        id: row.try_get("id").map_err(unavailable)?,
        status: PaymentStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("payment status {status:?}")))?,
        amount: Money::new(
            row.try_get("amount").map_err(unavailable)?,
            currency_of(&currency)?,
        ),
        payment_intent_id: row
            .try_get("provider_payment_intent_id")
            .map_err(unavailable)?,
        client_secret: row.try_get("client_secret").map_err(unavailable)?,
        last_error: row.try_get("last_error").map_err(unavailable)?,
        hosted,
    }))
}
