//! Provider events: verify, record, apply (risks G1, G6, W1–W6).
//!
//! The endpoint verifies the signature on the raw body before anything else, records the event in
//! the inbox (a duplicate is recorded once), answers, and then applies it. Applying is one
//! transaction with the inbox mark; a failure leaves the event `failed` for retry with backoff
//! and `dead` after [`EVENT_ATTEMPTS_MAX`] attempts, from where an operator can replay it.

use kassa_domain::payment::PaymentStatus;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{
    Actor, Applied, BillingEffect, EventEffect, EventStatus, FailedAttempt, InboxEvent,
    ProviderCheckoutSession, ProviderEvent, ProviderEventObject, ProviderInvoice,
    ProviderPaymentIntent, ProviderSubscription, ProviderSubscriptionSession, Recorded,
    SessionStatus, StoreError, WebhookRejected,
};

/// Attempts before an event is dead-lettered.
pub const EVENT_ATTEMPTS_MAX: i64 = 8;
/// First retry delay; doubles per attempt up to [`EVENT_BACKOFF_MAX_SECS`].
const EVENT_BACKOFF_BASE_SECS: i64 = 5;
const EVENT_BACKOFF_MAX_SECS: i64 = 3_600;
/// Longest wait for the provider's current state of an intent while applying an event.
const REFETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// Most inbox events listed for an operator at once.
pub const INBOX_LIST_MAX: i64 = 100;

/// Why a delivery was not taken.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Bad or missing signature, or unreadable body: 400, with no detail (risk S8).
    #[error("webhook rejected: {0}")]
    Rejected(WebhookRejected),
    /// Could not be recorded: 5xx, so the provider retries.
    #[error(transparent)]
    NotRecorded(AppError),
}

impl App {
    /// Verifies and records one delivery, then applies it. `Ok` means durably recorded.
    pub async fn receive_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<Recorded, WebhookError> {
        let header = signature.ok_or(WebhookError::Rejected(WebhookRejected::Signature))?;
        let now = self.clock.now_secs();
        let event = self
            .verifier
            .verify_and_parse(payload, header, now)
            .map_err(WebhookError::Rejected)?;
        crate::metrics::record_webhook_lag(now, event.created_secs);
        let text = std::str::from_utf8(payload)
            .map_err(|_| WebhookError::Rejected(WebhookRejected::Malformed))?;
        let recorded = self
            .store
            .record_event(&event.id, &event.event_type, text, now)
            .await
            .map_err(|error| WebhookError::NotRecorded(error.into()))?;
        if recorded == Recorded::New {
            // Applying is best effort here: a failure is recorded for the retry worker, and the
            // provider has its answer either way.
            let _ = self.apply_provider_event(&event).await;
        }
        Ok(recorded)
    }

    /// Applies a recorded event: effects and the processed mark in one transaction.
    pub async fn apply_provider_event(&self, event: &ProviderEvent) -> AppResult<Applied> {
        let actor = Actor {
            kind: "webhook".into(),
            request_id: Some(event.id.clone()),
            client_ip: None,
        };
        let effect = match self.current_state(effect_of(event)).await {
            Ok(effect) => effect,
            Err(error) => {
                self.record_failure(&event.id, &error.to_string()).await?;
                return Err(error);
            }
        };
        match self
            .store
            .apply_event(&event.id, &effect, &actor, self.clock.now_secs())
            .await
        {
            Ok(applied) => {
                if let Applied::Flagged(reason) | Applied::Ignored(reason) = &applied {
                    tracing::info!(event_id = %event.id, %reason, "webhook event not applied as usual");
                }
                Ok(applied)
            }
            Err(error) => {
                self.surface_impossible_move(&error, &actor).await;
                self.record_failure(&event.id, &error.to_string()).await?;
                Err(error.into())
            }
        }
    }

    /// A plan's write that did not take is a bug: it is logged and the order is flagged for a
    /// person (in a transaction of its own, the failed one having rolled back), never skipped.
    pub(crate) async fn surface_impossible_move(&self, error: &StoreError, actor: &Actor) {
        let StoreError::ImpossibleMove { order_id, detail } = error else {
            return;
        };
        tracing::error!(%order_id, %detail, "impossible status move; order flagged for attention");
        let reason = format!("impossible_move: {detail}");
        if let Err(flag_error) = self
            .store
            .flag_order(order_id, &reason, actor, self.clock.now_secs())
            .await
        {
            tracing::error!(%order_id, %flag_error, "could not flag the order");
        }
    }

    /// Retries due inbox events (new ones whose inline apply failed, failed ones whose backoff
    /// passed); returns how many were applied.
    pub async fn process_inbox(&self, batch_max: i64) -> AppResult<usize> {
        let due = self
            .store
            .due_events(batch_max, self.clock.now_secs())
            .await?;
        let mut applied = 0;
        for id in due {
            let Some(stored) = self.store.inbox_event(&id).await? else {
                continue;
            };
            match self.verifier.parse(stored.payload.as_bytes()) {
                Ok(event) => {
                    if self.apply_provider_event(&event).await.is_ok() {
                        applied += 1;
                    }
                }
                Err(rejected) => self.record_failure(&id, &rejected.to_string()).await?,
            }
        }
        Ok(applied)
    }

    pub async fn inbox_events(&self, status: EventStatus) -> AppResult<Vec<InboxEvent>> {
        Ok(self
            .store
            .inbox_events_with_status(status, INBOX_LIST_MAX)
            .await?)
    }

    /// An operator's replay of a failed or dead event: back to `received`, applied at once.
    pub async fn replay_inbox_event(&self, event_id: &str) -> AppResult<InboxEvent> {
        if !self
            .store
            .replay_event(event_id, self.clock.now_secs())
            .await?
        {
            return match self.store.inbox_event(event_id).await? {
                None => Err(AppError::NotFound {
                    what: "webhook event",
                }),
                Some(_) => Err(AppError::InvalidState {
                    message: "only failed or dead events can be replayed".into(),
                }),
            };
        }
        let stored = self
            .store
            .inbox_event(event_id)
            .await?
            .ok_or(AppError::NotFound {
                what: "webhook event",
            })?;
        if let Ok(event) = self.verifier.parse(stored.payload.as_bytes()) {
            let _ = self.apply_provider_event(&event).await;
        }
        self.store
            .inbox_event(event_id)
            .await?
            .ok_or(AppError::NotFound {
                what: "webhook event",
            })
    }

    /// Fetches the order's PaymentIntent from the provider and applies what it says, through
    /// the same compare-and-set path as webhooks (a storefront's "I confirmed" ping, risk P7).
    pub async fn sync_payment(&self, order_id: &str) -> AppResult<Applied> {
        let actor = Actor {
            kind: "sync".into(),
            request_id: None,
            client_ip: None,
        };
        self.refresh_payment(order_id, &actor).await
    }

    /// `POST /v1/orders/{id}/refresh`: asks the provider about the order's payment now and
    /// applies the answer through the same plan as its webhook would be, under `actor` — so a
    /// return page can show `paid` without waiting for the event. Whichever of this and the
    /// webhook comes second finds nothing left to do (risk P7).
    pub async fn refresh_payment(&self, order_id: &str, actor: &Actor) -> AppResult<Applied> {
        let order = self.order(order_id).await?;
        let intent_id = order
            .payment
            .and_then(|payment| payment.payment_intent_id)
            .ok_or(AppError::InvalidState {
                message: "this order has no PaymentIntent yet".into(),
            })?;
        let intent = self
            .provider
            .retrieve_payment_intent(&intent_id)
            .await
            .map_err(|_| AppError::ProviderUnavailable {
                retry_after_secs: 2,
            })?;
        match self
            .store
            .observe_payment_intent(&intent, actor, self.clock.now_secs())
            .await
        {
            Ok(applied) => Ok(applied),
            Err(error) => {
                self.surface_impossible_move(&error, actor).await;
                Err(error.into())
            }
        }
    }

    /// For the events whose order matters — those that may move a payment back to awaiting the
    /// customer (`payment_failed`, `requires_action`) — applies the intent's state as the
    /// provider holds it now, not as the event's snapshot had it: a late `payment_failed` of a
    /// first attempt must not undo a second attempt's progress. Forward-only events need no
    /// fetch; the state machine already refuses them when stale.
    async fn current_state(&self, effect: EventEffect) -> AppResult<EventEffect> {
        let EventEffect::PaymentIntent(intent) = &effect else {
            return Ok(effect);
        };
        if !matches!(
            intent.status,
            PaymentStatus::RequiresPaymentMethod | PaymentStatus::RequiresAction
        ) {
            return Ok(effect);
        }
        // Bounded: this runs before the webhook is answered, and Stripe waits only seconds. On
        // timeout the event stays recorded as failed and the inbox worker applies it later.
        // The attempt this event reports failed, kept from its own snapshot: the intent may
        // have been paid (or failed again) since, and each failed attempt is announced.
        let failed = kassa_domain::plan::failed_attempt(
            intent.status,
            intent.latest_charge.as_deref(),
            intent.last_error.as_deref(),
        )
        .map(|charge| FailedAttempt {
            charge_id: charge.to_owned(),
            decline_code: intent.last_error.clone(),
        });
        let fetched = tokio::time::timeout(
            REFETCH_TIMEOUT,
            self.provider.retrieve_payment_intent(&intent.id),
        )
        .await;
        match fetched {
            Ok(Ok(current)) => Ok(match failed {
                Some(failed) => EventEffect::PaymentAttemptFailed { current, failed },
                None => EventEffect::PaymentIntent(current),
            }),
            Ok(Err(_)) | Err(_) => Err(AppError::ProviderUnavailable {
                retry_after_secs: 5,
            }),
        }
    }

    async fn record_failure(&self, event_id: &str, error: &str) -> AppResult<()> {
        let attempts = self
            .store
            .inbox_event(event_id)
            .await?
            .map_or(0, |event| event.attempts);
        let backoff = backoff_secs(attempts);
        let status = self
            .store
            .mark_event_failed(
                event_id,
                error,
                EVENT_ATTEMPTS_MAX,
                backoff,
                self.clock.now_secs(),
            )
            .await?;
        if status == EventStatus::Dead {
            tracing::error!(%event_id, %error, "webhook event dead-lettered after {EVENT_ATTEMPTS_MAX} attempts");
        }
        Ok(())
    }
}

fn backoff_secs(attempts_so_far: i64) -> i64 {
    let exponent = u32::try_from(attempts_so_far.clamp(0, 20)).unwrap_or(20);
    EVENT_BACKOFF_BASE_SECS
        .saturating_mul(2i64.saturating_pow(exponent))
        .min(EVENT_BACKOFF_MAX_SECS)
}

/// What an event means for Kassa, decided by its type and object, never by which of several
/// events about the same payment arrived first (risk W1).
pub fn effect_of(event: &ProviderEvent) -> EventEffect {
    let kind = event.event_type.as_str();
    match &event.object {
        ProviderEventObject::PaymentIntent(intent) if kind.starts_with("payment_intent.") => {
            payment_intent_effect(kind, intent)
        }
        ProviderEventObject::Charge(charge) if kind == "charge.refunded" => {
            match &charge.payment_intent_id {
                Some(intent) => EventEffect::Refunds {
                    payment_intent_id: intent.clone(),
                    refunds: charge.refunds.clone(),
                },
                None => not_acted_on(kind),
            }
        }
        ProviderEventObject::Refund(refund)
            if kind.starts_with("refund.") || kind == "charge.refund.updated" =>
        {
            match &refund.payment_intent_id {
                Some(intent) => EventEffect::Refunds {
                    payment_intent_id: intent.clone(),
                    refunds: vec![refund.clone()],
                },
                None => not_acted_on(kind),
            }
        }
        ProviderEventObject::Dispute(dispute)
            if kind == "charge.dispute.created" || kind == "charge.dispute.updated" =>
        {
            EventEffect::Dispute {
                dispute: dispute.clone(),
                closed: false,
            }
        }
        ProviderEventObject::CheckoutSession(session) if kind.starts_with("checkout.session.") => {
            checkout_session_effect(kind, session)
        }
        ProviderEventObject::Dispute(dispute) if kind == "charge.dispute.closed" => {
            EventEffect::Dispute {
                dispute: dispute.clone(),
                closed: true,
            }
        }
        ProviderEventObject::SubscriptionSession(session) => {
            subscription_session_effect(kind, session)
        }
        ProviderEventObject::Subscription(subscription) => subscription_effect(kind, subscription),
        ProviderEventObject::Invoice(invoice) => invoice_effect(kind, invoice),
        ProviderEventObject::Account(account) if kind == "account.updated" => {
            EventEffect::Account {
                account: account.clone(),
                observed_at: event.created_secs,
            }
        }
        _ => not_acted_on(kind),
    }
}

/// The id Kassa gave a subscription, from the metadata it asked the provider to carry.
fn kassa_subscription_id(metadata: &[(String, String)]) -> Option<String> {
    metadata
        .iter()
        .find(|(key, _)| key == "kassa_subscription_id")
        .map(|(_, id)| id.clone())
}

/// A subscription's hosted page: completed links the provider's ids, expired ends a
/// subscription never paid. Neither grants credits: only a paid invoice does (risk W1).
fn subscription_session_effect(kind: &str, session: &ProviderSubscriptionSession) -> EventEffect {
    let kassa_subscription_id = kassa_subscription_id(&session.metadata);
    match (kind, session.status) {
        ("checkout.session.completed", SessionStatus::Complete) => {
            EventEffect::Billing(BillingEffect::Linked {
                kassa_subscription_id,
                provider_subscription_id: session.subscription_id.clone(),
                provider_customer_id: session.customer_id.clone(),
            })
        }
        ("checkout.session.expired", SessionStatus::Expired) => {
            EventEffect::Billing(BillingEffect::PageExpired {
                kassa_subscription_id,
            })
        }
        ("checkout.session.completed" | "checkout.session.expired", status) => EventEffect::Ignore(
            format!("type_status_mismatch: {kind} for a session that is {status:?}"),
        ),
        _ => not_acted_on(kind),
    }
}

/// `customer.subscription.created` and `.updated` link ids and never grant (risk W1);
/// `.deleted` ends the subscription.
fn subscription_effect(kind: &str, subscription: &ProviderSubscription) -> EventEffect {
    let kassa_subscription_id = kassa_subscription_id(&subscription.metadata);
    let provider_subscription_id = Some(subscription.id.clone());
    match kind {
        "customer.subscription.created" | "customer.subscription.updated" => {
            EventEffect::Billing(BillingEffect::Linked {
                kassa_subscription_id,
                provider_subscription_id,
                provider_customer_id: subscription.customer_id.clone(),
            })
        }
        "customer.subscription.deleted" if subscription.status == "canceled" => {
            EventEffect::Billing(BillingEffect::Ended {
                kassa_subscription_id,
                provider_subscription_id,
            })
        }
        "customer.subscription.deleted" => EventEffect::Ignore(format!(
            "type_status_mismatch: {kind} for a subscription that is {}",
            subscription.status
        )),
        _ => not_acted_on(kind),
    }
}

/// `invoice.paid` is the one event that grants a subscription's credits, once per invoice;
/// `invoice.payment_failed` makes it `past_due`.
fn invoice_effect(kind: &str, invoice: &ProviderInvoice) -> EventEffect {
    match kind {
        "invoice.paid" if invoice.paid => {
            EventEffect::Billing(BillingEffect::InvoicePaid(invoice.clone()))
        }
        "invoice.payment_failed" if !invoice.paid => {
            EventEffect::Billing(BillingEffect::InvoiceFailed(invoice.clone()))
        }
        "invoice.paid" | "invoice.payment_failed" => EventEffect::Ignore(format!(
            "type_status_mismatch: {kind} for an invoice that is {}paid",
            if invoice.paid { "" } else { "not " }
        )),
        _ => not_acted_on(kind),
    }
}

/// The one status each PaymentIntent event type may report, and so the furthest it may move a
/// payment. Types not listed (`created`, `partially_funded`, …) move nothing.
pub fn status_announced_by(event_type: &str) -> Option<PaymentStatus> {
    match event_type {
        "payment_intent.requires_action" => Some(PaymentStatus::RequiresAction),
        "payment_intent.payment_failed" => Some(PaymentStatus::RequiresPaymentMethod),
        "payment_intent.processing" => Some(PaymentStatus::Processing),
        "payment_intent.amount_capturable_updated" => Some(PaymentStatus::RequiresCapture),
        "payment_intent.succeeded" => Some(PaymentStatus::Succeeded),
        "payment_intent.canceled" => Some(PaymentStatus::Canceled),
        _ => None,
    }
}

/// A PaymentIntent event applies only when its type announces the status its object carries: a
/// `payment_intent.created` saying `succeeded` is recorded and not applied.
fn payment_intent_effect(kind: &str, intent: &ProviderPaymentIntent) -> EventEffect {
    match status_announced_by(kind) {
        None => not_acted_on(kind),
        Some(announced) if announced == intent.status => EventEffect::PaymentIntent(intent.clone()),
        Some(announced) => EventEffect::Ignore(format!(
            "type_status_mismatch: {kind} announces {announced} but its object is {}",
            intent.status
        )),
    }
}

/// What a Checkout Session event says about its payment (risks W1, W5). A paid session reports
/// the money taken; an unpaid complete one reports nothing (its PaymentIntent's own events say
/// whether it is authorized or still settling); a failed delayed payment sends the payment back
/// to awaiting one; an expired session can no longer be paid. Each is the same observation its
/// PaymentIntent's event would make, so whichever arrives first applies and the other finds
/// nothing left to do.
fn checkout_session_effect(kind: &str, session: &ProviderCheckoutSession) -> EventEffect {
    let expected_status = match kind {
        "checkout.session.expired" => SessionStatus::Expired,
        "checkout.session.completed"
        | "checkout.session.async_payment_succeeded"
        | "checkout.session.async_payment_failed" => SessionStatus::Complete,
        _ => return not_acted_on(kind),
    };
    if session.status != expected_status {
        return EventEffect::Ignore(format!(
            "type_status_mismatch: {kind} for a session that is {:?}",
            session.status
        ));
    }
    let reports = match kind {
        "checkout.session.async_payment_failed" => Some(PaymentStatus::RequiresPaymentMethod),
        _ => reported_by_session(session),
    };
    EventEffect::CheckoutSession {
        session: session.clone(),
        reports,
    }
}

/// The payment state a session's own status shows: an expired session can no longer be paid, a
/// paid one took the money; an open one, or one complete but unpaid, shows nothing (its
/// PaymentIntent does).
pub fn reported_by_session(session: &ProviderCheckoutSession) -> Option<PaymentStatus> {
    match session.status {
        SessionStatus::Expired => Some(PaymentStatus::Canceled),
        SessionStatus::Complete if session.paid => Some(PaymentStatus::Succeeded),
        SessionStatus::Complete | SessionStatus::Open => None,
    }
}

fn not_acted_on(kind: &str) -> EventEffect {
    EventEffect::Ignore(format!("event type {kind} is not acted on"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_w4_backoff_grows_and_is_capped() {
        assert_eq!(backoff_secs(0), 5);
        assert_eq!(backoff_secs(1), 10);
        assert_eq!(backoff_secs(3), 40);
        assert_eq!(backoff_secs(100), EVENT_BACKOFF_MAX_SECS);
    }
}
