//! What reconciliation reads and keeps: payments and refunds still in motion (to ask the
//! provider about), and a cursor into the provider's event list.

use async_trait::async_trait;
use kassa_domain::payment::PaymentStatus;

use super::refund_store::RefundRecord;
use super::store::StoreResult;

/// A payment not yet in a final state, with its PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInMotion {
    pub payment_id: String,
    pub order_id: String,
    pub payment_intent_id: String,
    pub status: PaymentStatus,
}

/// A hosted payment awaiting its customer whose page has no PaymentIntent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInMotion {
    pub payment_id: String,
    pub order_id: String,
    pub checkout_session_id: String,
}

#[async_trait]
pub trait ReconcileStore: Send + Sync {
    /// Payments with a PaymentIntent that are not final, least recently changed first.
    async fn payments_in_motion(&self, limit: i64) -> StoreResult<Vec<PaymentInMotion>>;

    /// Hosted payments whose page has no PaymentIntent yet and that are not final, least
    /// recently changed first: their session is what the provider can be asked about.
    async fn pages_in_motion(&self, limit: i64) -> StoreResult<Vec<PageInMotion>>;
    /// The payment's status now.
    async fn payment_status(&self, payment_id: &str) -> StoreResult<Option<PaymentStatus>>;
    /// Pending refunds the provider has answered for (it knows their id).
    async fn refunds_in_motion(&self, limit: i64) -> StoreResult<Vec<RefundRecord>>;
    async fn cursor(&self, name: &str) -> StoreResult<Option<i64>>;
    async fn set_cursor(&self, name: &str, value: i64, now: i64) -> StoreResult<()>;
}
