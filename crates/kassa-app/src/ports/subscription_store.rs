//! Storage of subscriptions and of what the provider reports about them (seed 003).

use async_trait::async_trait;
use kassa_domain::credits::SubscriptionStatus;

use super::checkout_store::Actor;
use super::provider::{ProviderCheckoutSession, ProviderInvoice};
use super::store::StoreResult;
use super::webhook_store::Applied;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub id: String,
    pub customer_id: String,
    pub plan_id: String,
    pub status: SubscriptionStatus,
    pub provider_subscription_id: Option<String>,
    pub provider_checkout_session_id: Option<String>,
    pub checkout_url: Option<String>,
    pub checkout_expires_at: Option<i64>,
    /// The end of the last period paid for.
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub created_at: i64,
}

/// A subscription to start under a client's `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub id: String,
    /// The customer's id if the e-mail has none yet.
    pub new_customer_id: String,
    pub email: String,
    pub plan_id: String,
    pub client_scope: String,
    pub client_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionStart {
    /// New, or the one this key started for the same plan and e-mail.
    Started(SubscriptionRecord),
    /// The key started a subscription for another plan or e-mail.
    KeyReused,
    /// Nothing started: the e-mail's customer holds a live subscription (incomplete, active or
    /// past due) to this plan already; the one that decides (active or past due first, then the
    /// newest).
    Held(SubscriptionRecord),
}

/// What the provider (or Kassa's own call to it) says about a subscription. The subscription is
/// found by Kassa's id from the metadata Kassa gave the provider, else by the provider's id;
/// one the provider knows and Kassa does not is not Kassa's, and is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillingEffect {
    /// The provider's ids for it (a completed page, a subscription created or updated):
    /// recorded; never a grant (risk W1).
    Linked {
        kassa_subscription_id: Option<String>,
        provider_subscription_id: Option<String>,
        provider_customer_id: Option<String>,
    },
    /// A paid invoice: its period's credits, once per invoice, and the subscription active.
    InvoicePaid(ProviderInvoice),
    /// A failed invoice: `past_due`, unless a later payment already covered its period.
    InvoiceFailed(ProviderInvoice),
    Ended {
        kassa_subscription_id: Option<String>,
        provider_subscription_id: Option<String>,
    },
    /// The hosted page expired (or was refused) before it was paid.
    PageExpired {
        kassa_subscription_id: Option<String>,
    },
    /// The provider accepted to end it at the period's end.
    CancelAtPeriodEnd { kassa_subscription_id: String },
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// The customer for the e-mail (made if there is none) and the subscription, once per key,
    /// and only if the customer holds no live subscription to the plan (checked under the
    /// customer's lock, so two keys at once make one).
    async fn start_subscription(
        &self,
        new: &NewSubscription,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<SubscriptionStart>;
    /// Records the customer's id at the provider unless one is recorded; returns the one that is.
    async fn record_provider_customer(
        &self,
        customer_id: &str,
        provider_customer_id: &str,
    ) -> StoreResult<String>;
    /// Records the hosted page unless one is recorded; returns the subscription.
    async fn record_subscription_page(
        &self,
        subscription_id: &str,
        session: &ProviderCheckoutSession,
        now: i64,
    ) -> StoreResult<SubscriptionRecord>;
    async fn subscription(&self, id: &str) -> StoreResult<Option<SubscriptionRecord>>;
    /// The subscription whose hosted page this is.
    async fn subscription_for_session(
        &self,
        session_id: &str,
    ) -> StoreResult<Option<SubscriptionRecord>>;
    async fn customer_subscriptions(
        &self,
        customer_id: &str,
    ) -> StoreResult<Vec<SubscriptionRecord>>;
    /// Applies `effect` outside the inbox (Kassa's own provider calls), in one transaction.
    async fn observe_billing(
        &self,
        effect: &BillingEffect,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied>;
}
