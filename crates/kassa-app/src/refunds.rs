//! Refunds (risk P6): `POST /v1/refunds` as atomic phases. One transaction with the order locked
//! decides the amount and records the refund as pending with a provider key derived from its id;
//! then the provider call, outside any transaction, carrying Kassa's refund id in its metadata;
//! then the answer is recorded. An unknown outcome leaves the refund pending: the client's retry
//! with the same key, or the background sender, calls again with the same provider key.

use hmac::digest::Digest;
use sha2::Sha256;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{
    Actor, CreateRefund, NewRefund, ProviderError, RefundOutcome, RefundRecord, RefundStart,
    StoreError,
};
use crate::validate;
use kassa_domain::refund::RefundStatus;

/// The reasons the provider accepts for a refund.
pub const REFUND_REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];
/// How long a refund may stay unsent before the background sender takes it over (its own
/// request may still be calling the provider until then).
pub const REFUND_SEND_GRACE_SECS: i64 = 60;
const PROVIDER_RETRY_AFTER_SECS: i64 = 2;

pub struct RefundInput {
    pub order_id: String,
    pub key_scope: String,
    pub idempotency_key: Option<String>,
    /// `None`: everything still refundable.
    pub amount_minor: Option<i64>,
    pub reason: Option<String>,
    pub restock: bool,
    pub actor: Actor,
}

impl App {
    pub async fn create_refund(&self, input: RefundInput) -> AppResult<RefundRecord> {
        let key = validate::idempotency_key(input.idempotency_key.as_deref())?;
        if let Some(reason) = &input.reason
            && !REFUND_REASONS.contains(&reason.as_str())
        {
            return Err(AppError::invalid(
                "reason",
                format!("must be one of {}", REFUND_REASONS.join(", ")),
            ));
        }
        let refund_id = self.ids.new_id("ref");
        let new = NewRefund {
            provider_idempotency_key: kassa_domain::provider_keys::refund(&refund_id),
            refund_id,
            order_id: input.order_id.clone(),
            client_scope: input.key_scope.clone(),
            client_key: key,
            request_hash: request_hash(&input),
            requested_minor: input.amount_minor,
            reason: input.reason.clone(),
            restock: input.restock,
        };
        let now = self.clock.now_secs();
        match self.store.start_refund(&new, &input.actor, now).await? {
            RefundStart::Started(refund) | RefundStart::Existing(refund) => {
                self.send_refund(refund, &input.actor).await
            }
            RefundStart::KeyReused => Err(AppError::IdempotencyKeyReused),
            RefundStart::Refused(refusal) => Err(refusal.into()),
            RefundStart::OrderMissing => Err(AppError::NotFound { what: "order" }),
        }
    }

    /// Calls the provider for a pending refund it has not answered for yet, and records the
    /// answer. Refunds already answered are returned as they stand.
    pub(crate) async fn send_refund(
        &self,
        refund: RefundRecord,
        actor: &Actor,
    ) -> AppResult<RefundRecord> {
        if refund.status != RefundStatus::Pending || refund.provider_refund_id.is_some() {
            return Ok(refund);
        }
        let Some(payment_intent_id) = refund.payment_intent_id.clone() else {
            return Err(
                StoreError::Corrupt(format!("refund {} has no PaymentIntent", refund.id)).into(),
            );
        };
        let request = CreateRefund {
            payment_intent_id,
            amount_minor: refund.amount_minor,
            reverse_transfer: refund.of_destination_charge,
            reason: refund
                .reason
                .clone()
                .filter(|r| REFUND_REASONS.contains(&r.as_str())),
            metadata: vec![
                ("kassa_refund_id".into(), refund.id.clone()),
                ("kassa_order_id".into(), refund.order_id.clone()),
            ],
            idempotency_key: refund.provider_idempotency_key.clone(),
        };
        let outcome = match self.provider.create_refund(request).await {
            Ok(reported) => RefundOutcome::Provider(reported),
            Err(ProviderError::Definite { code, message }) => {
                RefundOutcome::Refused(format!("{code}: {message}"))
            }
            Err(ProviderError::Unknown { reason }) => {
                tracing::warn!(refund_id = %refund.id, %reason, "refund outcome unknown; it stays pending");
                return Err(AppError::ProviderUnavailable {
                    retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                });
            }
        };
        let now = self.clock.now_secs();
        match self
            .store
            .finish_refund(&refund.id, &outcome, actor, now)
            .await
        {
            Ok(record) => Ok(record),
            Err(error) => {
                self.surface_impossible_move(&error, actor).await;
                Err(error.into())
            }
        }
    }

    /// Sends refunds whose request went away before the provider answered (after a grace
    /// period), and the ones Kassa started itself (at once); returns how many got an answer.
    pub async fn send_unsent_refunds(&self, batch_max: i64) -> AppResult<usize> {
        let before = self.clock.now_secs() - REFUND_SEND_GRACE_SECS;
        let actor = Actor {
            kind: "worker (refund sender)".into(),
            request_id: None,
            client_ip: None,
        };
        let mut sent = 0;
        for refund in self.store.unsent_refunds(before, batch_max).await? {
            let refund_id = refund.id.clone();
            match self.send_refund(refund, &actor).await {
                Ok(_) => sent += 1,
                Err(AppError::ProviderUnavailable { .. }) => {}
                // One refund failing never stops the others; it is tried again next round.
                Err(error) => tracing::error!(%refund_id, %error, "sending a refund failed"),
            }
        }
        Ok(sent)
    }
}

/// Same key + same request ⇒ same hash.
fn request_hash(input: &RefundInput) -> String {
    let fields = [
        input.order_id.clone(),
        input
            .amount_minor
            .map_or_else(|| "rest".into(), |a| a.to_string()),
        input.reason.clone().unwrap_or_default(),
        input.restock.to_string(),
    ];
    let mut hasher = Sha256::new();
    for field in &fields {
        hasher.update(field.len().to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}
