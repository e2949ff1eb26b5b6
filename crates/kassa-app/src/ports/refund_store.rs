//! Storage for refunds Kassa asks the provider for: the local record written before the call
//! (with the provider key derived from its id), the call's result, and the refunds still to be
//! sent (their client went away, or Kassa started them itself).

use async_trait::async_trait;
use kassa_domain::commands::Refusal;
use kassa_domain::refund::RefundStatus;

use super::checkout_store::Actor;
use super::provider::ProviderRefund;
use super::store::StoreResult;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: String,
    pub order_id: String,
    pub payment_intent_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub reason: Option<String>,
    pub restock: bool,
    pub provider_refund_id: Option<String>,
    pub provider_idempotency_key: String,
    pub failure_reason: Option<String>,
    pub created_at: i64,
    /// Its payment was a destination charge to a seller's account.
    pub of_destination_charge: bool,
}

/// A refund asked for through the API, decided and recorded in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    pub refund_id: String,
    pub order_id: String,
    pub client_scope: String,
    pub client_key: String,
    pub request_hash: String,
    /// `None`: everything still refundable.
    pub requested_minor: Option<i64>,
    pub reason: Option<String>,
    pub restock: bool,
    pub provider_idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStart {
    /// Recorded as pending; the provider call comes next.
    Started(RefundRecord),
    /// This key already asked for this refund: here it is, as it stands.
    Existing(RefundRecord),
    /// This key was used for a different request.
    KeyReused,
    Refused(Refusal),
    OrderMissing,
}

/// How the provider call for a refund ended, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Provider(ProviderRefund),
    /// The provider definitely refused: the refund failed and its amount is free again.
    Refused(String),
}

#[async_trait]
pub trait RefundStore: Send + Sync {
    /// With the order locked: finds the key's refund, or decides (`commands::decide_refund`) and
    /// records a new pending one.
    async fn start_refund(
        &self,
        new: &NewRefund,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<RefundStart>;

    /// Records the provider's answer on the refund (matched by Kassa's id), and what follows for
    /// the order: its refunded total, its status, the restock.
    async fn finish_refund(
        &self,
        refund_id: &str,
        outcome: &RefundOutcome,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<RefundRecord>;

    async fn refunds_of(&self, order_id: &str) -> StoreResult<Vec<RefundRecord>>;

    /// Pending refunds never sent (or whose answer was lost), created at or before `before`.
    async fn unsent_refunds(&self, before: i64, limit: i64) -> StoreResult<Vec<RefundRecord>>;
}
