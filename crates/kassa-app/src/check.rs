//! The invariant checker (SPEC §3): what the database shows broken, and what disagrees with the
//! provider — every PaymentIntent the provider holds as authorized or succeeded is reflected by
//! its order, and Kassa's succeeded refunds equal the provider's. Used by `kassa check`, by
//! `POST /v1/admin/check`, and at the end of chaos runs and benchmarks.

use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;
use kassa_domain::refund::RefundStatus;

use crate::App;
use crate::error::AppResult;
use crate::ports::{PaymentToCheck, ProviderError, ProviderPaymentIntent, Violation};

/// Most payments compared with the provider in one check (the newest).
pub const CHECK_PAYMENTS_MAX: i64 = 1_000;
/// How long past its expiry a checkout may still hold stock before that breaks invariant 6: the
/// janitor runs every few seconds, so this is generous.
pub const STALE_HOLD_GRACE_SECS: i64 = 300;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub payments_checked: usize,
    /// Provider calls that got no answer: those payments were not compared.
    pub provider_errors: usize,
    pub violations: Vec<Violation>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl App {
    pub async fn check_invariants(&self) -> AppResult<CheckReport> {
        let now = self.clock.now_secs();
        let mut report = CheckReport {
            violations: self
                .store
                .local_violations(now - STALE_HOLD_GRACE_SECS)
                .await?,
            ..CheckReport::default()
        };
        for payment in self.store.payments_to_check(CHECK_PAYMENTS_MAX).await? {
            report.payments_checked += 1;
            let intent = match self
                .provider
                .retrieve_payment_intent(&payment.payment_intent_id)
                .await
            {
                Ok(intent) => intent,
                Err(ProviderError::Unknown { .. }) => {
                    report.provider_errors += 1;
                    continue;
                }
                Err(ProviderError::Definite { message, .. }) => {
                    report.violations.push(violation(
                        1,
                        &payment,
                        format!("the provider does not know this intent: {message}"),
                    ));
                    continue;
                }
            };
            if !reflects(&payment, &intent) {
                let what = format!(
                    "the provider holds the intent as {} but the order is {}",
                    intent.status, payment.order_status
                );
                report.violations.push(violation(1, &payment, what));
            }
            match self.provider.list_refunds(&payment.payment_intent_id).await {
                Ok(refunds) => {
                    let succeeded: Vec<i64> = refunds
                        .iter()
                        .filter(|refund| refund.status == RefundStatus::Succeeded)
                        .map(|refund| refund.amount_minor)
                        .collect();
                    let theirs = (
                        i64::try_from(succeeded.len()).unwrap_or(i64::MAX),
                        succeeded.iter().sum::<i64>(),
                    );
                    if theirs != payment.refunds_succeeded {
                        let what = format!(
                            "succeeded refunds (count, total): provider {theirs:?}, Kassa {:?}",
                            payment.refunds_succeeded
                        );
                        report.violations.push(violation(4, &payment, what));
                    }
                }
                Err(_) => report.provider_errors += 1,
            }
        }
        Ok(report)
    }
}

fn violation(invariant: u8, payment: &PaymentToCheck, what: String) -> Violation {
    Violation {
        invariant,
        ids: vec![
            payment.order_id.clone(),
            payment.payment_id.clone(),
            payment.payment_intent_id.clone(),
        ],
        what,
    }
}

/// Whether the order's status reflects what the provider holds (invariant 1).
fn reflects(payment: &PaymentToCheck, intent: &ProviderPaymentIntent) -> bool {
    use OrderStatus as O;
    match intent.status {
        PaymentStatus::RequiresCapture => payment.order_status == O::Authorized,
        PaymentStatus::Succeeded => match payment.order_status {
            O::Paid | O::PartiallyRefunded | O::Refunded | O::Disputed => true,
            // Money taken for an order already canceled must have gone back.
            O::Canceled => payment.refunds_succeeded.1 >= intent.amount_received_minor,
            _ => false,
        },
        _ => true,
    }
}
