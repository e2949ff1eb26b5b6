//! The janitor (risks G4, G9, P9, D2): abandoned checkouts stop holding stock, idle carts
//! expire, and rows past their retention are pruned.
//!
//! A checkout whose stock hold expired is first asked about at the provider: a payment in
//! progress (3-D Secure, a slow method) extends the hold, so a customer mid-payment never loses
//! the stock; a payment that succeeded is applied, never canceled. Only an abandoned one is
//! canceled — at the provider *first*, the order marked `expire` meanwhile — and only a confirmed
//! cancel releases its reservations. An unknown answer leaves everything as it is for the next
//! round (or the operation finisher).

use kassa_domain::commands::Operation;
use kassa_domain::payment::PaymentStatus;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::ports::{Actor, ProviderError, SessionStatus};

/// Most checkouts and most carts the janitor handles per round.
pub const JANITOR_BATCH_MAX: i64 = 100;
/// Most rows of each kind the janitor prunes per round: a round's deletes stay short (they
/// share the writer with checkouts), and at a round every 10 s a backlog of millions still
/// clears within a day.
pub const PRUNE_BATCH_MAX: i64 = 1_000;

/// What the janitor did with one expired checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Canceled at the provider, then here; stock released.
    Canceled,
    /// A payment is in progress: the hold was extended.
    Extended,
    /// The provider had taken the payment (or holds it): applied, nothing canceled.
    PaidMeanwhile,
    /// Nothing to do (not awaiting payment any more, no intent yet, another operation).
    Skipped,
}

/// A round's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JanitorReport {
    pub canceled: usize,
    pub extended: usize,
    pub paid_meanwhile: usize,
    pub carts_expired: u64,
    pub pruned: Pruned,
}

/// Rows past their retention deleted in a round (risk D2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub idempotency_keys: u64,
    pub webhook_events: u64,
    pub notifications: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.idempotency_keys + self.webhook_events + self.notifications
    }
}

/// How far the hosted page's own path took an expiry.
enum HostedExpiry {
    Done(Expiry),
    /// The page is complete and its payment under way: the intent decides.
    PaymentUnderWay(String),
}

fn janitor() -> Actor {
    Actor {
        kind: "worker (janitor)".into(),
        request_id: None,
        client_ip: None,
    }
}

impl App {
    /// One janitor round over expired checkouts and idle carts.
    pub async fn run_janitor(&self) -> AppResult<JanitorReport> {
        let now = self.clock.now_secs();
        let mut report = JanitorReport::default();
        for order_id in self.store.expired_checkouts(now, JANITOR_BATCH_MAX).await? {
            match self.expire_checkout(&order_id).await {
                Ok(Expiry::Canceled) => report.canceled += 1,
                Ok(Expiry::Extended) => report.extended += 1,
                Ok(Expiry::PaidMeanwhile) => report.paid_meanwhile += 1,
                Ok(Expiry::Skipped) => {}
                // One checkout failing never stops the others; it is tried again next round.
                Err(error) => tracing::warn!(%order_id, %error, "expiring a checkout failed"),
            }
        }
        let idle_since = now - self.settings.cart_ttl_secs;
        report.carts_expired = self
            .store
            .expire_carts(idle_since, JANITOR_BATCH_MAX)
            .await?;
        report.pruned = self.prune(PRUNE_BATCH_MAX).await?;
        Ok(report)
    }

    /// Deletes up to `batch_max` rows of each prunable kind past its retention (risk D2): keys
    /// that hold no checkout in progress, events the inbox finished with, notifications
    /// delivered or dead. Orders, payments, refunds, disputes, the ledger, subscriptions,
    /// transfers and the audit trail are never pruned (`kassa_domain::retention`).
    pub async fn prune(&self, batch_max: i64) -> AppResult<Pruned> {
        let now = self.clock.now_secs();
        let before = self.settings.retention.cutoffs(now);
        let pruned = Pruned {
            idempotency_keys: self
                .store
                .prune_idempotency_keys(before.idempotency_keys, now, batch_max)
                .await?,
            webhook_events: self
                .store
                .prune_webhook_events(before.webhook_events, batch_max)
                .await?,
            notifications: self
                .store
                .prune_notifications(before.notifications, batch_max)
                .await?,
        };
        for (table, count) in [
            ("idempotency_keys", pruned.idempotency_keys),
            ("webhook_events", pruned.webhook_events),
            ("notifications", pruned.notifications),
        ] {
            metrics::counter!("kassa_rows_pruned_total", "table" => table).increment(count);
        }
        Ok(pruned)
    }

    /// Expires one checkout whose stock hold ran out, asking the provider first.
    pub async fn expire_checkout(&self, order_id: &str) -> AppResult<Expiry> {
        let actor = janitor();
        let order = self.order(order_id).await?;
        if !order.status.is_awaiting_payment() {
            return Ok(Expiry::Skipped);
        }
        let Some(payment) = order.payment else {
            return Ok(Expiry::Skipped);
        };
        let intent_id = match (&payment.hosted, payment.payment_intent_id) {
            (Some(hosted), _) => {
                // The session may not exist yet: the checkout completer settles that first.
                let Some(session_id) = &hosted.session_id else {
                    return Ok(Expiry::Skipped);
                };
                match self
                    .expire_hosted_page(order_id, &payment.id, session_id, &actor)
                    .await?
                {
                    HostedExpiry::Done(expiry) => return Ok(expiry),
                    HostedExpiry::PaymentUnderWay(intent_id) => intent_id,
                }
            }
            (None, Some(intent_id)) => intent_id,
            // The intent may not exist yet: the checkout completer settles that first.
            (None, None) => return Ok(Expiry::Skipped),
        };
        self.expire_by_intent(order_id, &payment.id, &intent_id, &actor)
            .await
    }

    /// An expired hosted checkout: an open page is expired at the provider first; a page the
    /// customer completed is applied, or, when its payment is still under way, left to the
    /// intent's path.
    async fn expire_hosted_page(
        &self,
        order_id: &str,
        payment_id: &str,
        session_id: &str,
        actor: &Actor,
    ) -> AppResult<HostedExpiry> {
        let mut session = self.current_session(session_id).await?;
        if session.status == SessionStatus::Open {
            let now = self.clock.now_secs();
            if !self.store.begin_expire(order_id, actor, now).await? {
                return Ok(HostedExpiry::Done(Expiry::Skipped));
            }
            session = self.end_hosted_page(payment_id, session_id, actor).await?;
        } else {
            self.apply_session(&session, actor).await?;
        }
        Ok(match (session.status, session.payment_intent_id) {
            (SessionStatus::Expired, _) => HostedExpiry::Done(Expiry::Canceled),
            // Completed: its intent says whether the money is taken, authorized or settling.
            (SessionStatus::Complete, Some(intent_id)) => {
                let now = self.clock.now_secs();
                self.store
                    .end_operation(order_id, Operation::Expire, actor, now)
                    .await?;
                HostedExpiry::PaymentUnderWay(intent_id)
            }
            // The provider would not expire it, yet it is open: asked again next round.
            (SessionStatus::Open, _) => HostedExpiry::Done(Expiry::Skipped),
            (status, None) => {
                let reason = format!(
                    "hosted_page_without_payment: the janitor found its page {status:?} with no PaymentIntent"
                );
                self.give_up_operation(order_id, Operation::Expire, &reason, actor)
                    .await?;
                HostedExpiry::Done(Expiry::Skipped)
            }
        })
    }

    /// An expired checkout whose PaymentIntent exists: asked about, then extended, applied or
    /// canceled at the provider first.
    async fn expire_by_intent(
        &self,
        order_id: &str,
        payment_id: &str,
        intent_id: &str,
        actor: &Actor,
    ) -> AppResult<Expiry> {
        let current = self.current_intent(intent_id).await?;
        self.observe_intent(&current, actor).await?;
        match current.status {
            PaymentStatus::RequiresAction | PaymentStatus::Processing => {
                let until = self.clock.now_secs() + self.settings.reservation_ttl_secs;
                let now = self.clock.now_secs();
                self.store
                    .extend_reservations(order_id, until, actor, now)
                    .await?;
                Ok(Expiry::Extended)
            }
            PaymentStatus::Succeeded | PaymentStatus::RequiresCapture => Ok(Expiry::PaidMeanwhile),
            PaymentStatus::RequiresPaymentMethod => {
                self.cancel_abandoned(order_id, payment_id, intent_id, actor)
                    .await
            }
            PaymentStatus::Canceled | PaymentStatus::Creating | PaymentStatus::Failed => {
                Ok(Expiry::Skipped)
            }
        }
    }

    async fn cancel_abandoned(
        &self,
        order_id: &str,
        payment_id: &str,
        intent_id: &str,
        actor: &Actor,
    ) -> AppResult<Expiry> {
        let now = self.clock.now_secs();
        if !self.store.begin_expire(order_id, actor, now).await? {
            return Ok(Expiry::Skipped);
        }
        let key = kassa_domain::provider_keys::cancel_payment_intent(payment_id);
        let current = match self.provider.cancel_payment_intent(intent_id, &key).await {
            Ok(intent) => intent,
            // Not cancelable any more: the customer paid (or is paying) meanwhile.
            Err(ProviderError::Definite { .. }) => self.current_intent(intent_id).await?,
            Err(ProviderError::Unknown { .. }) => {
                return Err(AppError::ProviderUnavailable {
                    retry_after_secs: 2,
                });
            }
        };
        // Canceled: the order is canceled and its stock released, the mark cleared, in one
        // transaction. Paid: applied, the mark cleared; nothing is refunded.
        self.observe_intent(&current, actor).await?;
        match current.status {
            PaymentStatus::Canceled => Ok(Expiry::Canceled),
            PaymentStatus::Succeeded | PaymentStatus::RequiresCapture => Ok(Expiry::PaidMeanwhile),
            _ => {
                let now = self.clock.now_secs();
                self.store
                    .end_operation(order_id, Operation::Expire, actor, now)
                    .await?;
                Ok(Expiry::Skipped)
            }
        }
    }
}
