//! Reconciliation (risks R1, W4): Kassa's books brought back to the provider's truth after any
//! fault. Every payment and refund still in motion is fetched from the provider and its state
//! applied through the same plan path as webhooks; the provider's events since a stored cursor
//! are paged through and the unseen ones recorded in the inbox and applied, so a missed webhook
//! is recovered within one period. What cannot be repaired is reported and the order flagged.

use kassa_domain::payment::PaymentStatus;

use crate::App;
use crate::error::AppResult;
use crate::ports::{Actor, ProviderError, Recorded, RefundOutcome};

/// Most payments and most refunds checked in one run.
pub const RECONCILE_ITEMS_MAX: i64 = 1_000;
/// Most pages (of [`EVENTS_PAGE_MAX`]) of the provider's events read in one run.
pub const EVENT_PAGES_MAX: usize = 100;
const EVENTS_PAGE_MAX: u32 = 100;
/// How far before the cursor each run looks again: events created in the same second as the
/// last one seen, or listed late, are not missed (the inbox makes the overlap harmless).
const EVENTS_OVERLAP_SECS: i64 = 300;
/// Where the first run starts reading the provider's events.
const EVENTS_FIRST_LOOKBACK_SECS: i64 = 86_400;
const EVENTS_CURSOR: &str = "provider_events";

/// Told what reconciliation is doing, for a progress bar.
pub trait ReconcileProgress: Send + Sync {
    /// A step begins; `total` items, when known.
    fn step(&self, name: &'static str, total: Option<u64>);
    fn advance(&self);
}

/// For callers that show no progress.
pub struct Quietly;

impl ReconcileProgress for Quietly {
    fn step(&self, _: &'static str, _: Option<u64>) {}
    fn advance(&self) {}
}

/// What one run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub payments_checked: usize,
    pub refunds_checked: usize,
    pub events_read: usize,
    /// Events the inbox had never seen (missed webhooks), now recorded and applied.
    pub events_recovered: usize,
    /// Sellers whose account's readiness was read from the provider.
    pub sellers_checked: usize,
    /// Calls the provider did not answer; those items are checked again next run.
    pub provider_errors: usize,
    /// Differences that could not be repaired: (order id, what differs). Each order is flagged.
    pub differences: Vec<(String, String)>,
}

/// The provider's answer about `object_id` (of order `order_id`); `None` after counting an
/// unknown outcome (asked again next run) or reporting a definite refusal as a difference.
fn looked_up<T>(
    answer: Result<T, ProviderError>,
    object_id: &str,
    order_id: &str,
    report: &mut ReconcileReport,
) -> Option<T> {
    match answer {
        Ok(found) => Some(found),
        Err(ProviderError::Unknown { .. }) => {
            report.provider_errors += 1;
            None
        }
        Err(ProviderError::Definite { message, .. }) => {
            let what = format!("{object_id} unknown to the provider: {message}");
            report.differences.push((order_id.to_owned(), what));
            None
        }
    }
}

fn reconciler() -> Actor {
    Actor {
        kind: "worker (reconciliation)".into(),
        request_id: None,
        client_ip: None,
    }
}

impl App {
    /// One reconciliation run.
    pub async fn reconcile(&self, progress: &dyn ReconcileProgress) -> AppResult<ReconcileReport> {
        let mut report = ReconcileReport::default();
        self.reconcile_payments(progress, &mut report).await?;
        self.reconcile_pages(progress, &mut report).await?;
        self.reconcile_refunds(progress, &mut report).await?;
        self.recover_events(progress, &mut report).await?;
        self.reconcile_sellers(progress, &mut report).await?;
        for (order_id, what) in &report.differences {
            let reason = format!("reconciliation: {what}");
            if let Err(error) = self
                .store
                .flag_order(order_id, &reason, &reconciler(), self.clock.now_secs())
                .await
            {
                tracing::error!(%order_id, %error, "could not flag a difference");
            }
        }
        Ok(report)
    }

    /// Each seller's readiness as the provider holds it now: the only way Kassa learns of a
    /// change whose `account.updated` it missed (Stripe lists Connect events in no platform
    /// event list).
    async fn reconcile_sellers(
        &self,
        progress: &dyn ReconcileProgress,
        report: &mut ReconcileReport,
    ) -> AppResult<()> {
        let accounts = self.store.seller_accounts(RECONCILE_ITEMS_MAX).await?;
        progress.step("sellers", u64::try_from(accounts.len()).ok());
        let actor = reconciler();
        for account_id in accounts {
            progress.advance();
            match self.provider.retrieve_account(&account_id).await {
                Ok(account) => {
                    report.sellers_checked += 1;
                    let now = self.clock.now_secs();
                    self.store
                        .observe_account(&account, now, &actor, now)
                        .await?;
                }
                Err(_) => report.provider_errors += 1,
            }
        }
        Ok(())
    }

    async fn reconcile_payments(
        &self,
        progress: &dyn ReconcileProgress,
        report: &mut ReconcileReport,
    ) -> AppResult<()> {
        let payments = self.store.payments_in_motion(RECONCILE_ITEMS_MAX).await?;
        progress.step("payments", u64::try_from(payments.len()).ok());
        let actor = reconciler();
        for payment in payments {
            progress.advance();
            report.payments_checked += 1;
            let answer = self
                .provider
                .retrieve_payment_intent(&payment.payment_intent_id)
                .await;
            let Some(intent) = looked_up(
                answer,
                &payment.payment_intent_id,
                &payment.order_id,
                report,
            ) else {
                continue;
            };
            let now = self.clock.now_secs();
            if let Err(error) = self
                .store
                .observe_payment_intent(&intent, &actor, now)
                .await
            {
                self.surface_impossible_move(&error, &actor).await;
                // One payment failing never stops the run: reported, and flagged if impossible.
                let what = format!(
                    "applying the provider's state of {} failed: {error}",
                    payment.payment_id
                );
                report.differences.push((payment.order_id, what));
                continue;
            }
            let held = self.store.payment_status(&payment.payment_id).await?;
            if held != Some(intent.status) {
                let what = format!(
                    "payment {} is {} at the provider but {} here",
                    payment.payment_id,
                    intent.status,
                    held.map_or("missing", PaymentStatus::as_str)
                );
                report.differences.push((payment.order_id, what));
            }
        }
        Ok(())
    }

    /// Hosted pages whose payment has not started (no PaymentIntent known): the session as the
    /// provider holds it is applied — paid, expired, or complete with an intent now known, which
    /// the next run re-fetches like any other.
    async fn reconcile_pages(
        &self,
        progress: &dyn ReconcileProgress,
        report: &mut ReconcileReport,
    ) -> AppResult<()> {
        let pages = self.store.pages_in_motion(RECONCILE_ITEMS_MAX).await?;
        progress.step("hosted pages", u64::try_from(pages.len()).ok());
        let actor = reconciler();
        for page in pages {
            progress.advance();
            report.payments_checked += 1;
            let answer = self
                .provider
                .retrieve_checkout_session(&page.checkout_session_id)
                .await;
            let Some(session) =
                looked_up(answer, &page.checkout_session_id, &page.order_id, report)
            else {
                continue;
            };
            if let Err(error) = self.apply_session(&session, &actor).await {
                let what = format!(
                    "applying the provider's state of {} failed: {error}",
                    page.checkout_session_id
                );
                report.differences.push((page.order_id, what));
            }
        }
        Ok(())
    }

    async fn reconcile_refunds(
        &self,
        progress: &dyn ReconcileProgress,
        report: &mut ReconcileReport,
    ) -> AppResult<()> {
        let refunds = self.store.refunds_in_motion(RECONCILE_ITEMS_MAX).await?;
        progress.step("refunds", u64::try_from(refunds.len()).ok());
        let actor = reconciler();
        for refund in refunds {
            progress.advance();
            report.refunds_checked += 1;
            let Some(provider_id) = refund.provider_refund_id.as_deref() else {
                continue;
            };
            match self.provider.retrieve_refund(provider_id).await {
                Ok(reported) => {
                    let outcome = RefundOutcome::Provider(reported);
                    let now = self.clock.now_secs();
                    if let Err(error) = self
                        .store
                        .finish_refund(&refund.id, &outcome, &actor, now)
                        .await
                    {
                        self.surface_impossible_move(&error, &actor).await;
                        let what = format!(
                            "applying the provider's state of {} failed: {error}",
                            refund.id
                        );
                        report.differences.push((refund.order_id.clone(), what));
                    }
                }
                Err(ProviderError::Unknown { .. }) => report.provider_errors += 1,
                Err(ProviderError::Definite { message, .. }) => {
                    let what = format!("refund {} unknown to the provider: {message}", refund.id);
                    report.differences.push((refund.order_id, what));
                }
            }
        }
        Ok(())
    }

    /// Pages through the provider's events since the cursor (newest first) and records and
    /// applies the ones the inbox never saw.
    async fn recover_events(
        &self,
        progress: &dyn ReconcileProgress,
        report: &mut ReconcileReport,
    ) -> AppResult<()> {
        let now = self.clock.now_secs();
        let cursor = self
            .store
            .cursor(EVENTS_CURSOR)
            .await?
            .unwrap_or(now - EVENTS_FIRST_LOOKBACK_SECS);
        let since = cursor - EVENTS_OVERLAP_SECS;
        progress.step("provider events", None);
        let mut newest = cursor;
        let mut after: Option<String> = None;
        for _ in 0..EVENT_PAGES_MAX {
            let page = match self
                .provider
                .list_events(since, after.as_deref(), EVENTS_PAGE_MAX)
                .await
            {
                Ok(page) => page,
                Err(_) => {
                    report.provider_errors += 1;
                    // The cursor stays: the next run reads these events again.
                    return Ok(());
                }
            };
            for event in &page.events {
                progress.advance();
                report.events_read += 1;
                newest = newest.max(event.created_secs);
                let recorded = self
                    .store
                    .record_event(&event.id, &event.event_type, &event.payload, now)
                    .await?;
                if recorded == Recorded::New {
                    report.events_recovered += 1;
                    if let Ok(parsed) = self.verifier.parse(event.payload.as_bytes()) {
                        // A failure stays in the inbox for its retry worker, as for a webhook.
                        let _ = self.apply_provider_event(&parsed).await;
                    }
                }
            }
            match page.events.last() {
                Some(last) if page.has_more => after = Some(last.id.clone()),
                _ => break,
            }
        }
        self.store.set_cursor(EVENTS_CURSOR, newest, now).await?;
        Ok(())
    }
}
