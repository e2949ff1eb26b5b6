//! Storage for incoming provider events: an inbox keyed by the provider's event id, and the one
//! transaction that applies an event's effects together with its `processed` mark.

use async_trait::async_trait;

use super::checkout_store::Actor;
use super::provider::{
    ProviderCheckoutSession, ProviderDispute, ProviderPaymentIntent, ProviderRefund,
};
use super::store::StoreResult;
use kassa_domain::payment::PaymentStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    /// Already in the inbox (a redelivery); nothing was written.
    Duplicate,
}

/// Inbox states: `received` → `processed` | `ignored`; on error `failed` (retried with
/// backoff) → `dead` after the maximum attempts; an operator's replay puts it back to `received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Received,
    Processed,
    Ignored,
    Failed,
    Dead,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Processed => "processed",
            EventStatus::Ignored => "ignored",
            EventStatus::Failed => "failed",
            EventStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<EventStatus> {
        [
            EventStatus::Received,
            EventStatus::Processed,
            EventStatus::Ignored,
            EventStatus::Failed,
            EventStatus::Dead,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEvent {
    pub id: String,
    pub event_type: String,
    pub status: EventStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub payload: String,
    pub received_at: i64,
}

/// A payment attempt that failed: its charge at the provider and the provider's decline code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    pub charge_id: String,
    pub decline_code: Option<String>,
}

/// What an event asks Kassa to do, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventEffect {
    /// The provider reports this PaymentIntent state.
    PaymentIntent(ProviderPaymentIntent),
    /// An attempt failed, as the event reported it; `current` is the intent as the provider
    /// holds it now (it may have moved on: the merchant still hears of the failed attempt).
    PaymentAttemptFailed {
        current: ProviderPaymentIntent,
        failed: FailedAttempt,
    },
    /// The provider reports these refunds of a PaymentIntent.
    Refunds {
        payment_intent_id: String,
        refunds: Vec<ProviderRefund>,
    },
    /// A Checkout Session event: the session (its ids are recorded on Kassa's payment) and the
    /// state of its payment the event announces, if it announces one.
    CheckoutSession {
        session: ProviderCheckoutSession,
        reports: Option<PaymentStatus>,
    },
    /// A dispute opened (`closed = false`) or ended.
    Dispute {
        dispute: ProviderDispute,
        closed: bool,
    },
    /// A connected account's readiness, observed at the event's time.
    Account {
        account: super::ProviderAccount,
        observed_at: i64,
    },
    /// A subscription's page, subscription or invoice event.
    Billing(super::BillingEffect),
    /// Nothing for Kassa to do (an uninteresting type, an event that contradicts itself);
    /// recorded as ignored with this reason.
    Ignore(String),
}

/// How applying an event ended. Every variant committed the inbox mark with the effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Effects committed.
    Done,
    /// Already processed earlier: nothing applied twice.
    AlreadyProcessed,
    /// Nothing to do (stale, unknown object, uninteresting type); marked ignored.
    Ignored(String),
    /// Committed, and the order was flagged for an operator (amount mismatch, stock gone).
    Flagged(String),
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn record_event(
        &self,
        id: &str,
        event_type: &str,
        payload: &str,
        now: i64,
    ) -> StoreResult<Recorded>;

    async fn inbox_event(&self, id: &str) -> StoreResult<Option<InboxEvent>>;

    /// Applies `effect` and marks the event processed in one transaction; the "already
    /// processed?" check is inside that transaction.
    async fn apply_event(
        &self,
        event_id: &str,
        effect: &EventEffect,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied>;

    /// Applies a PaymentIntent state seen outside the inbox (a client-side confirmation sync,
    /// reconciliation) through the same compare-and-set path as webhooks.
    async fn observe_payment_intent(
        &self,
        intent: &ProviderPaymentIntent,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied>;

    /// Applies a Checkout Session seen outside the inbox (the janitor, a cancel,
    /// reconciliation) through the same path as its events: its ids are recorded on the payment
    /// and the state it reports, if any, is observed.
    async fn observe_checkout_session(
        &self,
        session: &ProviderCheckoutSession,
        reports: Option<PaymentStatus>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Applied>;

    /// Records a failed attempt: `failed` with the next attempt after `backoff_secs`, or `dead`
    /// once `attempts_max` attempts were made.
    async fn mark_event_failed(
        &self,
        event_id: &str,
        error: &str,
        attempts_max: i64,
        backoff_secs: i64,
        now: i64,
    ) -> StoreResult<EventStatus>;

    /// Ids of events waiting to be (re)processed, oldest first.
    async fn due_events(&self, limit: i64, now: i64) -> StoreResult<Vec<String>>;

    async fn inbox_events_with_status(
        &self,
        status: EventStatus,
        limit: i64,
    ) -> StoreResult<Vec<InboxEvent>>;

    /// Puts a failed or dead event back to `received` with fresh attempts; false if it is not
    /// failed or dead.
    async fn replay_event(&self, event_id: &str, now: i64) -> StoreResult<bool>;
}
