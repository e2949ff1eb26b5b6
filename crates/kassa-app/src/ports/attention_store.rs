//! Storage for a person's resolution of an order flagged `needs_attention` (risk N1). The store
//! locks the order, loads what `kassa_domain::attention` decides on, and applies the plan with
//! compare-and-set writes, clearing the flag with an audit record of who and why in the same
//! transaction. An action that must ask the provider first is split around the call: the store
//! says what to ask, the app asks, and the answer is applied only if the order still carries
//! the flag it was asked about.

use async_trait::async_trait;
use kassa_domain::attention::{Question, ResolveAction};
use kassa_domain::commands::Refusal;

use super::checkout_store::{Actor, KeyRef};
use super::provider::ProviderPaymentIntent;
use super::refund_store::RefundRecord;
use super::store::StoreResult;

/// A person's resolution, checked: the action and their note (kept in the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub order_id: String,
    pub action: ResolveAction,
    pub note: String,
}

/// What the provider is to be asked about: the order's latest payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskAbout {
    pub question: Question,
    /// The flag as read (`code: detail`): the answer applies only if the order still has it.
    pub flag: String,
    pub payment_id: String,
    pub payment_intent_id: Option<String>,
    pub checkout_session_id: Option<String>,
    /// The checkout's idempotency key while it waits at its recovery point (retried with it).
    pub checkout_key: Option<KeyRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolutionStart {
    /// Applied; the flag is cleared. A refund it recorded pending is sent next.
    Resolved {
        refund: Option<RefundRecord>,
    },
    /// Nothing changed yet: the provider must answer first.
    Ask(AskAbout),
    Refused(Refusal),
    OrderMissing,
}

/// What the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderAnswer {
    /// The PaymentIntent as it stands now.
    Intent(Box<ProviderPaymentIntent>),
    /// The answer was applied through its usual path (a retried checkout, an expired page).
    Applied,
    /// The hosted page is complete with no PaymentIntent.
    PageWithoutPayment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolutionEnd {
    Resolved,
    Refused(Refusal),
    OrderMissing,
}

#[async_trait]
pub trait AttentionStore: Send + Sync {
    /// With the order locked: decides the resolution (`attention::decide_resolution`) and, when
    /// it needs no provider call, applies it and clears the flag in the same transaction.
    async fn begin_resolution(
        &self,
        resolution: &Resolution,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ResolutionStart>;

    /// With the order locked again: if it still carries `flag`, decides what `answer` does
    /// (`attention::decide_answer`), applies it and clears the flag; an intent is applied through
    /// the payment plan, and the resolution is refused (nothing kept) if that plan flags again.
    async fn finish_resolution(
        &self,
        resolution: &Resolution,
        flag: &str,
        answer: &ProviderAnswer,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ResolutionEnd>;
}
