//! The invariant checker (docs/risks.md): what the database shows broken, and what disagrees with the
//! provider — every PaymentIntent the provider holds as authorized or succeeded is reflected by
//! its order, and Kassa's succeeded refunds equal the provider's. Used by `kassa check`, by
//! `POST /v1/admin/check`, and at the end of chaos runs and benchmarks.

use std::collections::HashMap;

use kassa_domain::credits::PeriodGrant;
use kassa_domain::marketplace::seller_shares;
use kassa_domain::order::OrderStatus;
use kassa_domain::payment::PaymentStatus;
use kassa_domain::refund::RefundStatus;

use crate::App;
use crate::error::AppResult;
use crate::ports::{InvoiceGrant, PaymentToCheck, ProviderError, ProviderPaymentIntent, Violation};

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
            if intent.destination != payment.destination {
                let what = format!(
                    "the provider charged with destination {:?}, Kassa decided {:?}",
                    intent.destination, payment.destination
                );
                report.violations.push(violation(10, &payment, what));
            }
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
        self.check_ledger(&mut report).await?;
        self.check_transfers(&mut report).await?;
        Ok(report)
    }

    /// Invariant 11, the books of several sellers' orders: the transfers Kassa planned and the
    /// platform's keep add up to what was captured; the provider holds exactly the transfers
    /// Kassa made for the order's transfer group (none twice, none missing), each for the
    /// amount and seller Kassa planned, with what Kassa reversed of it reversed.
    async fn check_transfers(&self, report: &mut CheckReport) -> AppResult<()> {
        for group in self
            .store
            .transfer_groups_to_check(CHECK_PAYMENTS_MAX)
            .await?
        {
            let mut wrong = Vec::new();
            let planned: i64 = group.transfers.iter().map(|t| t.amount_minor).sum();
            if planned + group.platform_fee_minor != group.captured_minor {
                wrong.push(format!(
                    "transfers {planned} + platform's {} {} != captured {}",
                    group.platform_fee_minor, group.currency, group.captured_minor
                ));
            }
            let owed: Vec<(String, i64)> = if group.canceled {
                Vec::new()
            } else {
                seller_shares(
                    group.captured_minor,
                    group.total_minor,
                    &group.seller_lines,
                    group.fee_bps,
                )
                .into_iter()
                .filter(|share| share.transfer_minor > 0)
                .map(|share| (share.seller_id, share.transfer_minor))
                .collect()
            };
            let mut kept: Vec<(String, i64)> = group
                .transfers
                .iter()
                .map(|t| (t.seller_id.clone(), t.amount_minor))
                .collect();
            kept.sort();
            let mut owed = owed;
            owed.sort();
            if kept != owed {
                wrong.push(format!(
                    "the transfers planned {kept:?} are not the sellers' shares {owed:?}"
                ));
            }
            let theirs = match self.provider.list_transfers(&group.order_id).await {
                Ok(transfers) => transfers,
                Err(_) => {
                    report.provider_errors += 1;
                    continue;
                }
            };
            let mut made: HashMap<&str, _> = group
                .transfers
                .iter()
                .filter_map(|t| t.provider_transfer_id.as_deref().map(|id| (id, t)))
                .collect();
            for transfer in &theirs {
                let Some(ours) = made.remove(transfer.id.as_str()) else {
                    wrong.push(format!(
                        "the provider holds transfer {} ({} to {}) that Kassa did not make",
                        transfer.id, transfer.amount_minor, transfer.destination
                    ));
                    continue;
                };
                if (transfer.amount_minor, transfer.destination.as_str())
                    != (ours.amount_minor, ours.account_id.as_str())
                {
                    wrong.push(format!(
                        "transfer {} is {} to {} at the provider, {} to {} in Kassa",
                        transfer.id,
                        transfer.amount_minor,
                        transfer.destination,
                        ours.amount_minor,
                        ours.account_id
                    ));
                }
                let reversed = group
                    .reversed
                    .iter()
                    .find(|(id, _)| id == &transfer.id)
                    .map_or(0, |(_, amount)| *amount);
                if transfer.amount_reversed_minor != reversed {
                    wrong.push(format!(
                        "transfer {} has {} reversed at the provider, {reversed} in Kassa",
                        transfer.id, transfer.amount_reversed_minor
                    ));
                }
            }
            wrong.extend(
                made.into_keys().map(|id| {
                    format!("Kassa made transfer {id}, which the provider does not hold")
                }),
            );
            report
                .violations
                .extend(wrong.into_iter().map(|what| Violation {
                    invariant: 11,
                    ids: vec![group.order_id.clone()],
                    what,
                }));
        }
        Ok(())
    }

    /// Invariant 8 against the provider, subscription by subscription: every invoice it holds
    /// as paying one period of the plan in full has exactly the plan's grant, for the
    /// subscription's customer, whatever was paid (risk W6); a period paid that Kassa could not
    /// grant for (a price it does not know) is reported, with whether it is flagged; and no
    /// grant exists for an invoice it does not hold as paid. (An invoice paid a moment ago
    /// whose event is still on its way shows as missing its grant until it arrives.)
    async fn check_ledger(&self, report: &mut CheckReport) -> AppResult<()> {
        for subscription in self
            .store
            .subscriptions_to_check(CHECK_PAYMENTS_MAX)
            .await?
        {
            let invoices = match self
                .provider
                .list_paid_invoices(&subscription.provider_subscription_id)
                .await
            {
                Ok(invoices) => invoices,
                Err(_) => {
                    report.provider_errors += 1;
                    continue;
                }
            };
            let mut grants: HashMap<String, InvoiceGrant> = self
                .store
                .invoice_grants(&subscription.subscription_id)
                .await?
                .into_iter()
                .map(|grant| (grant.business_key.clone(), grant))
                .collect();
            let mut wrong = Vec::new();
            for invoice in invoices {
                let grant = grants.remove(&format!("invoice:{}", invoice.id));
                let owed =
                    invoice.period_grant(subscription.unit_amount_minor, &subscription.currency);
                let credits = subscription.credits_per_period;
                match (owed, grant) {
                    (PeriodGrant::Grant, None) if credits > 0 => wrong.push(format!(
                        "the paid period of invoice {} has no grant",
                        invoice.id
                    )),
                    // A period paid and not granted for is a person's to settle: reported until
                    // it is, saying whether the subscription carries the flag that asks.
                    (PeriodGrant::UnknownPrice | PeriodGrant::NotPaidInFull, None)
                        if credits > 0 =>
                    {
                        wrong.push(format!(
                            "the paid period of invoice {} has no grant ({}; {})",
                            invoice.id,
                            owed.reason_code(),
                            match &subscription.needs_attention {
                                Some(_) => "the subscription is flagged for attention",
                                None => "the subscription is NOT flagged",
                            }
                        ));
                    }
                    (PeriodGrant::NotAPeriod, Some(_)) => wrong.push(format!(
                        "invoice {} paid no whole period of the plan but was granted credits",
                        invoice.id
                    )),
                    (PeriodGrant::UnknownPrice | PeriodGrant::NotPaidInFull, Some(_)) => {
                        wrong.push(format!(
                            "invoice {} was granted credits though it is {}",
                            invoice.id,
                            owed.reason_code()
                        ));
                    }
                    (PeriodGrant::Grant, Some(grant))
                        if (grant.customer_id.as_str(), grant.amount)
                            != (subscription.customer_id.as_str(), credits) =>
                    {
                        wrong.push(format!(
                            "the grant of invoice {} is {} for {}, not {} for {}",
                            invoice.id,
                            grant.amount,
                            grant.customer_id,
                            credits,
                            subscription.customer_id
                        ));
                    }
                    _ => {}
                }
            }
            wrong.extend(grants.into_keys().map(|key| {
                format!("credits granted for {key}, which the provider does not hold as paid")
            }));
            report
                .violations
                .extend(wrong.into_iter().map(|what| Violation {
                    invariant: 8,
                    ids: vec![
                        subscription.subscription_id.clone(),
                        subscription.provider_subscription_id.clone(),
                    ],
                    what,
                }));
        }
        Ok(())
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
