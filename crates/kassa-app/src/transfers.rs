//! Paying sellers of several sellers' orders (seed 001): one charge with the order as its
//! transfer group, then, after capture, a transfer to each seller and, for each refund, a
//! reversal of each transfer in proportion. Every transfer and reversal is a job the store
//! plans once; this worker sends what is unsent with the job's derived key, so a retry, a
//! second worker or a restart after a crash asks the provider for the same transfer again and
//! gets the one it made (never a second). A job older than Stripe's memory of keys is looked
//! for in the order's transfer group first; a transfer Stripe refused is asked for again, under
//! a new key, once Stripe reports its seller ready.

use crate::App;
use crate::error::AppResult;
use crate::ports::{
    Actor, CreateTransfer, CreateTransferReversal, PayoutOutcome, ProviderError, ProviderResult,
    ReversalJob, SellerBalance, TransferJob,
};

/// How long Kassa trusts Stripe to remember an idempotency key: Stripe keeps them for at least
/// 24 hours.
pub const PROVIDER_KEY_TRUSTED_SECS: i64 = 23 * 3600;

impl App {
    /// One round of the seller payout worker: plans the transfers of newly captured orders and
    /// the reversals of newly succeeded refunds, then sends what is unsent. Returns how many
    /// transfers and reversals got an answer.
    pub async fn pay_sellers(&self, batch_max: i64) -> AppResult<usize> {
        let actor = Actor {
            kind: "worker (seller payouts)".into(),
            request_id: None,
            client_ip: None,
        };
        self.plan_payouts(batch_max, &actor).await?;
        let mut answered = 0;
        for transfer in self.store.unsent_transfers(batch_max).await? {
            if self.send_transfer(&transfer, &actor).await? {
                answered += 1;
            }
        }
        for reversal in self.store.unsent_reversals(batch_max).await? {
            if self.send_reversal(&reversal, &actor).await? {
                answered += 1;
            }
        }
        Ok(answered)
    }

    /// Plans what is due: transfers of captured orders, reversals of succeeded refunds, and
    /// refused transfers whose seller is ready again. One order failing never stops the others;
    /// it is tried again next round.
    async fn plan_payouts(&self, batch_max: i64, actor: &Actor) -> AppResult<()> {
        for captured in self.store.captured_for_sellers(batch_max).await? {
            let order_id = &captured.order_id;
            // The charge the money comes from, so each transfer is tied to its funds.
            let source_charge = match self
                .provider
                .retrieve_payment_intent(&captured.payment_intent_id)
                .await
            {
                Ok(intent) => intent.latest_charge,
                Err(error) => {
                    tracing::warn!(%order_id, %error, "transfers wait for their charge");
                    continue;
                }
            };
            let now = self.clock.now_secs();
            if let Err(error) = self
                .store
                .plan_transfers(order_id, source_charge.as_deref(), actor, now)
                .await
            {
                tracing::error!(%order_id, %error, "planning an order's transfers failed");
            }
        }
        let now = self.clock.now_secs();
        if let Err(error) = self.store.plan_reversals(batch_max, now).await {
            tracing::error!(%error, "planning reversals failed");
        }
        if let Err(error) = self.store.retry_refused_transfers(actor, now).await {
            tracing::error!(%error, "asking for refused transfers again failed");
        }
        Ok(())
    }

    /// Sends one unsent transfer and records the answer; whether there was one.
    async fn send_transfer(&self, transfer: &TransferJob, actor: &Actor) -> AppResult<bool> {
        let outcome = if self.clock.now_secs() - transfer.key_created_at > PROVIDER_KEY_TRUSTED_SECS
        {
            // Stripe may have forgotten the key: a transfer it made under it is found in the
            // order's group instead, and never made twice.
            match self.provider.list_transfers(&transfer.order_id).await {
                Ok(made) => made
                    .into_iter()
                    .find(|made| made.destination == transfer.account_id)
                    .map(|made| PayoutOutcome::Made {
                        provider_id: made.id,
                    }),
                Err(_) => return Ok(false),
            }
        } else {
            None
        };
        let outcome = match outcome {
            Some(found) => found,
            None => {
                let request = CreateTransfer {
                    amount_minor: transfer.amount_minor,
                    currency: transfer.currency.to_lowercase(),
                    destination: transfer.account_id.clone(),
                    transfer_group: transfer.order_id.clone(),
                    source_charge: transfer.source_charge.clone(),
                    metadata: vec![
                        ("kassa_order_id".into(), transfer.order_id.clone()),
                        ("kassa_seller_id".into(), transfer.seller_id.clone()),
                    ],
                    idempotency_key: transfer.provider_key.clone(),
                };
                let answer = self.provider.create_transfer(request).await;
                let Some(outcome) = outcome_of(answer.map(|made| made.id)) else {
                    return Ok(false);
                };
                outcome
            }
        };
        let now = self.clock.now_secs();
        self.store
            .finish_transfer(transfer, &outcome, actor, now)
            .await?;
        Ok(true)
    }

    /// Sends one unsent reversal whose transfer is made and records the answer; whether there
    /// was one. One whose refund failed is dropped if it was never sent; one that may have been
    /// is asked again with its key (Stripe answers with what it made).
    async fn send_reversal(&self, reversal: &ReversalJob, actor: &Actor) -> AppResult<bool> {
        let now = self.clock.now_secs();
        if reversal.refund_failed
            && reversal.sent_at.is_none()
            && self
                .store
                .drop_unsent_reversal(
                    reversal,
                    "its refund failed: nothing to take back",
                    actor,
                    now,
                )
                .await?
        {
            return Ok(true);
        }
        // Its transfer is not made yet (refused, it waits for the seller).
        let Some(transfer_id) = &reversal.provider_transfer_id else {
            return Ok(false);
        };
        let forgotten = reversal
            .sent_at
            .is_some_and(|sent_at| now - sent_at > PROVIDER_KEY_TRUSTED_SECS);
        let found = if forgotten {
            // As for transfers: one Stripe made under a key it may have forgotten is found
            // among the transfer's reversals by Kassa's refund id, not made twice.
            match self.provider.list_transfer_reversals(transfer_id).await {
                Ok(made) => made
                    .into_iter()
                    .find(|made| {
                        made.metadata.iter().any(|(key, value)| {
                            key == "kassa_refund_id" && *value == reversal.refund_id
                        })
                    })
                    .map(|made| PayoutOutcome::Made {
                        provider_id: made.id,
                    }),
                Err(_) => return Ok(false),
            }
        } else {
            None
        };
        let outcome = match found {
            Some(found) => found,
            None => {
                if !self.store.mark_reversal_sent(reversal, now).await? {
                    return Ok(false);
                }
                let request = CreateTransferReversal {
                    transfer_id: transfer_id.clone(),
                    amount_minor: reversal.amount_minor,
                    metadata: vec![
                        ("kassa_refund_id".into(), reversal.refund_id.clone()),
                        ("kassa_order_id".into(), reversal.order_id.clone()),
                    ],
                    idempotency_key: reversal.provider_key.clone(),
                };
                let answer = self.provider.reverse_transfer(request).await;
                let Some(outcome) = outcome_of(answer.map(|made| made.id)) else {
                    return Ok(false);
                };
                outcome
            }
        };
        let now = self.clock.now_secs();
        self.store
            .finish_reversal(reversal, &outcome, actor, now)
            .await?;
        Ok(true)
    }

    /// What a seller was paid, what was taken back, and what is still to be sent, per currency.
    pub async fn seller_balance(&self, seller_id: &str) -> AppResult<Vec<SellerBalance>> {
        self.seller(seller_id).await?;
        Ok(self.store.seller_balance(seller_id).await?)
    }
}

/// How a transfer or reversal call ended: made (the provider's id), or definitely refused
/// (its reason); `None` when the outcome is unknown — the job stays unsent and is asked again
/// with the same key.
fn outcome_of(answer: ProviderResult<String>) -> Option<PayoutOutcome> {
    match answer {
        Ok(provider_id) => Some(PayoutOutcome::Made { provider_id }),
        Err(ProviderError::Definite { code, message }) => {
            Some(PayoutOutcome::Refused(format!("{code}: {message}")))
        }
        Err(ProviderError::Unknown { reason }) => {
            tracing::warn!(%reason, "payout outcome unknown; it stays unsent");
            None
        }
    }
}
