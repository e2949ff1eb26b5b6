//! Storage of what sellers are paid for orders of several sellers' products: a transfer to each
//! seller after capture and a reversal of it for each refund, every one a durable job planned
//! once and sent with a key derived from it.

use async_trait::async_trait;

use super::checkout_store::Actor;
use super::store::StoreResult;

/// A captured order whose transfers are not planned yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedForSellers {
    pub order_id: String,
    pub payment_intent_id: String,
}

/// One seller's transfer of one order, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferJob {
    pub order_id: String,
    pub seller_id: String,
    pub account_id: String,
    /// Lowercase ISO code.
    pub currency: String,
    pub amount_minor: i64,
    pub source_charge: Option<String>,
    pub provider_key: String,
    pub provider_transfer_id: Option<String>,
    pub refusal: Option<String>,
    /// When its provider key was first used (an unsent job's key is as old as the job, or its
    /// latest attempt): Stripe forgets keys after a day.
    pub key_created_at: i64,
}

/// What one refund takes back from one seller's transfer, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalJob {
    pub refund_id: String,
    pub order_id: String,
    pub seller_id: String,
    pub amount_minor: i64,
    pub provider_key: String,
    /// The transfer it takes from, once that was made.
    pub provider_transfer_id: Option<String>,
    /// Its refund failed after it succeeded (the customer got nothing back): dropped, unless it
    /// may have been sent already.
    pub refund_failed: bool,
    /// When its provider call first started: since then it may exist at the provider.
    pub sent_at: Option<i64>,
}

/// How sending a transfer or reversal ended, when it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutOutcome {
    Made { provider_id: String },
    Refused(String),
}

/// A seller's money in one currency: what their transfers carried, what reversals took back,
/// what is still to be sent (less what is still to be taken back), and what they are owed but
/// waits for a person (held, with why, in `holds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerBalance {
    pub currency: String,
    pub paid_minor: i64,
    pub reversed_minor: i64,
    pub owed_minor: i64,
    /// Owed of paid orders whose transfers wait: the order needs a person's attention, or a
    /// dispute of it is open. Not in `owed_minor`.
    pub held_minor: i64,
    /// The orders that make up `held_minor`.
    pub holds: Vec<SellerHold>,
}

/// What one order owes a seller while its transfers wait, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SellerHold {
    pub order_id: String,
    pub amount_minor: i64,
    /// The order's flag, or the open dispute.
    pub reason: String,
}

/// A transfer group's order as Kassa booked it, for the invariant checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferGroupToCheck {
    pub order_id: String,
    pub currency: String,
    pub captured_minor: i64,
    pub total_minor: i64,
    /// (seller, a line's amount) of the order's sellers' lines.
    pub seller_lines: Vec<(String, i64)>,
    pub fee_bps: i64,
    /// Canceled before it was paid: nothing is owed to anyone.
    pub canceled: bool,
    /// What the platform keeps: the captured amount less every transfer.
    pub platform_fee_minor: i64,
    pub transfers: Vec<TransferJob>,
    /// Reversals made, per provider transfer id.
    pub reversed: Vec<(String, i64)>,
}

#[async_trait]
pub trait TransferStore: Send + Sync {
    /// Captured orders of a transfer group whose transfers are not planned yet.
    async fn captured_for_sellers(&self, limit: i64) -> StoreResult<Vec<CapturedForSellers>>;
    /// Plans each seller's transfer of a captured order (once; a second call plans nothing
    /// more) and books the platform's keep on its payment; the order's transfers.
    async fn plan_transfers(
        &self,
        order_id: &str,
        source_charge: Option<&str>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Vec<TransferJob>>;
    /// Plans the reversals of succeeded refunds of orders whose transfers are planned, in the
    /// order the refunds were made; how many refunds were planned for.
    async fn plan_reversals(&self, limit: i64, now: i64) -> StoreResult<usize>;
    async fn unsent_transfers(&self, limit: i64) -> StoreResult<Vec<TransferJob>>;
    /// Refused transfers whose seller the provider reported ready since are unsent again, each
    /// under a new key (its attempt's); how many.
    async fn retry_refused_transfers(&self, actor: &Actor, now: i64) -> StoreResult<usize>;
    /// Records how a transfer ended, unless it was recorded already or the answer is for
    /// another attempt's key.
    async fn finish_transfer(
        &self,
        transfer: &TransferJob,
        outcome: &PayoutOutcome,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()>;
    async fn unsent_reversals(&self, limit: i64) -> StoreResult<Vec<ReversalJob>>;
    /// Records how a reversal ended, unless it was recorded already.
    async fn finish_reversal(
        &self,
        reversal: &ReversalJob,
        outcome: &PayoutOutcome,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()>;
    /// Records that the reversal's provider call starts, unless it was dropped; whether it may
    /// be sent.
    async fn mark_reversal_sent(&self, reversal: &ReversalJob, now: i64) -> StoreResult<bool>;
    /// Drops a reversal never sent (its refund failed); whether it was dropped (a reversal a
    /// worker started sending meanwhile is not).
    async fn drop_unsent_reversal(
        &self,
        reversal: &ReversalJob,
        reason: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<bool>;
    async fn seller_balance(&self, seller_id: &str) -> StoreResult<Vec<SellerBalance>>;
    /// Transfer groups' orders whose transfers are planned, newest first, at most `limit`, with
    /// what their split was planned from.
    async fn transfer_groups_to_check(&self, limit: i64) -> StoreResult<Vec<TransferGroupToCheck>>;
}
