//! Reading orders, their payment attempt and their audit trail.

use async_trait::async_trait;
use kassa_domain::Money;
use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;

use super::checkout_store::ShippingAddress;
use super::provider::CaptureMethod;
use super::store::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub sku: String,
    pub product_name: String,
    pub quantity: i64,
    pub unit_amount_minor: i64,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub id: String,
    pub status: PaymentStatus,
    pub amount: Money,
    pub payment_intent_id: Option<String>,
    pub client_secret: Option<String>,
    pub last_error: Option<String>,
    /// Set for a payment made on the provider's hosted page.
    pub hosted: Option<HostedPayment>,
}

/// The Checkout Session of a hosted payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedPayment {
    /// `None` until the provider created it.
    pub session_id: Option<String>,
    pub url: Option<String>,
    pub expires_at: i64,
}

/// A dispute of the order's payment, as the provider last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeRecord {
    pub id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
    pub evidence_due_by: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: String,
    pub cart_id: String,
    pub status: OrderStatus,
    pub subtotal: Money,
    pub total: Money,
    pub captured_amount_minor: i64,
    pub refunded_amount_minor: i64,
    pub capture_method: CaptureMethod,
    pub email: String,
    pub shipping: ShippingAddress,
    pub needs_attention: Option<String>,
    pub created_at: i64,
    pub lines: Vec<OrderLine>,
    /// The latest payment attempt.
    pub payment: Option<PaymentRecord>,
    /// Every refund, oldest first.
    pub refunds: Vec<super::refund_store::RefundRecord>,
    /// Every dispute, oldest first.
    pub disputes: Vec<DisputeRecord>,
    /// What lost disputes took back.
    pub dispute_lost_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub entity_type: String,
    pub entity_id: String,
    pub action: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub before_state: Option<String>,
    pub after_state: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// One line of an operator's order list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub id: String,
    pub status: OrderStatus,
    pub total: Money,
    pub needs_attention: Option<String>,
    pub pending_operation: Option<String>,
    pub created_at: i64,
}

/// Which orders an operator lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFilter {
    Status(OrderStatus),
    NeedsAttention,
}

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Orders matching `filter`, newest first, at most `limit`.
    async fn orders_matching(
        &self,
        filter: OrderFilter,
        limit: i64,
    ) -> StoreResult<Vec<OrderSummary>>;
    async fn order(&self, id: &str) -> StoreResult<Option<OrderRecord>>;
    /// The order paid through the hosted page of `session_id`.
    async fn order_id_for_checkout_session(&self, session_id: &str) -> StoreResult<Option<String>>;
    /// The audit trail of an order and of everything that belongs to it, oldest first.
    async fn order_events(&self, order_id: &str) -> StoreResult<Vec<AuditRecord>>;
    /// Marks the order `needs_attention` with `reason` (audited, announced once), in a
    /// transaction of its own.
    async fn flag_order(
        &self,
        order_id: &str,
        reason: &str,
        actor: &super::checkout_store::Actor,
        now: i64,
    ) -> StoreResult<()>;
}
