//! The database's side of the invariants of docs/risks.md, as queries that return what breaks them.

use async_trait::async_trait;
use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;

use super::store::StoreResult;

/// One broken invariant: its number in docs/risks.md, the ids involved, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: u8,
    pub ids: Vec<String>,
    pub what: String,
}

/// A payment with its PaymentIntent, for the provider's side of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentToCheck {
    pub payment_id: String,
    pub order_id: String,
    pub payment_intent_id: String,
    pub order_status: OrderStatus,
    pub payment_status: PaymentStatus,
    /// Refunds Kassa holds as succeeded for this payment: (count, total).
    pub refunds_succeeded: (i64, i64),
    /// The destination charge Kassa decided on (a seller's account and the platform's fee).
    pub destination: Option<super::Destination>,
}

/// A subscription the provider knows, for the ledger's side of the check (invariant 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionToCheck {
    pub subscription_id: String,
    pub customer_id: String,
    pub provider_subscription_id: String,
    /// What a period of the plan costs.
    pub unit_amount_minor: i64,
    pub currency: String,
    /// What each paid period grants.
    pub credits_per_period: i64,
    /// Why it waits for a person (a paid period it could not grant for), if it does.
    pub needs_attention: Option<String>,
}

/// A grant for a paid invoice: its business key (`invoice:{id}`), customer and amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceGrant {
    pub business_key: String,
    pub customer_id: String,
    pub amount: i64,
}

#[async_trait]
pub trait InvariantStore: Send + Sync {
    /// Everything the database alone can show broken. `stale_before`: a checkout still holding
    /// stock that expired before this has outlived the janitor (invariant 6).
    async fn local_violations(&self, stale_before: i64) -> StoreResult<Vec<Violation>>;
    /// Payments with a PaymentIntent, at most `limit`, newest first.
    async fn payments_to_check(&self, limit: i64) -> StoreResult<Vec<PaymentToCheck>>;
    /// Subscriptions with a provider id, at most `limit`, newest first.
    async fn subscriptions_to_check(&self, limit: i64) -> StoreResult<Vec<SubscriptionToCheck>>;
    /// The grants for the paid invoices of a subscription.
    async fn invoice_grants(&self, subscription_id: &str) -> StoreResult<Vec<InvoiceGrant>>;
}
