//! Subscriptions and the credit ledger (seed 003): the subscription state machine, and the
//! rules every ledger entry obeys. A balance is the sum of a customer's entries and is never
//! driven below zero; each grant exists once per business key (the paid invoice, the paid
//! credit-pack order), which the store enforces with a unique constraint.

use crate::states::{IllegalTransition, named_states};

named_states! {
    pub enum SubscriptionStatus {
        /// Created; its first invoice is not paid yet.
        Incomplete => "incomplete",
        Active => "active",
        /// A renewal's invoice failed; paying it makes the subscription active again.
        PastDue => "past_due",
        Canceled => "canceled",
    }
}

/// What the provider reports about a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionEvent {
    InvoicePaid,
    InvoiceFailed,
    Ended,
}

impl SubscriptionStatus {
    pub fn apply(self, event: SubscriptionEvent) -> Result<SubscriptionStatus, IllegalTransition> {
        use SubscriptionEvent as E;
        use SubscriptionStatus as S;
        match (self, event) {
            (S::Incomplete | S::Active | S::PastDue, E::InvoicePaid) => Ok(S::Active),
            (S::Active | S::PastDue, E::InvoiceFailed) => Ok(S::PastDue),
            (S::Incomplete | S::Active | S::PastDue, E::Ended) => Ok(S::Canceled),
            (from, event) => Err(IllegalTransition {
                from: from.as_str(),
                event: format!("{event:?}"),
            }),
        }
    }
}

/// What a new subscription gets when its customer already holds one to the same plan (one
/// customer, one live subscription per plan: a second would charge them twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldPlan {
    /// Active or past due: the customer has the plan; the new one is refused, naming it.
    Refuse,
    /// Incomplete and its page still open: that subscription and its page are the answer.
    ReturnOpen,
    /// Incomplete and its page ran out: end it (unless it turns out paid), then start anew.
    EndThenRetry,
    /// Canceled: it holds nothing; start anew.
    Start,
}

/// What to do with a subscription to the plan the customer holds already, in `status`, whose
/// page closes at `page_expires_at` (the page's own expiry, or the one it would be made with),
/// at `now`.
pub fn held_plan(status: SubscriptionStatus, page_expires_at: i64, now: i64) -> HeldPlan {
    match status {
        SubscriptionStatus::Active | SubscriptionStatus::PastDue => HeldPlan::Refuse,
        SubscriptionStatus::Incomplete if page_expires_at > now => HeldPlan::ReturnOpen,
        SubscriptionStatus::Incomplete => HeldPlan::EndThenRetry,
        SubscriptionStatus::Canceled => HeldPlan::Start,
    }
}

/// A subscription's billing as Kassa records it: its status and which periods are paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Billing {
    pub status: SubscriptionStatus,
    /// The end of the last period paid for.
    pub paid_through: Option<i64>,
    /// The end of the latest period whose invoice failed and is not paid yet.
    pub unpaid_through: Option<i64>,
}

impl Billing {
    /// A paid invoice for the period ending `period_end`: active again unless a later period's
    /// invoice failed and is still unpaid (then past due: an incomplete subscription has started
    /// and fallen behind). Reports arrive in any order, so an old period's payment never hides a
    /// newer failure, and never revives an ended subscription.
    pub fn invoice_paid(self, period_end: i64) -> Billing {
        use SubscriptionEvent as E;
        let unpaid_through = self.unpaid_through.filter(|unpaid| *unpaid > period_end);
        let paid = self.status.apply(E::InvoicePaid);
        let status = match unpaid_through {
            None => paid,
            Some(_) => paid.and_then(|status| status.apply(E::InvoiceFailed)),
        }
        .unwrap_or(self.status);
        Billing {
            status,
            paid_through: Some(
                self.paid_through
                    .map_or(period_end, |paid| paid.max(period_end)),
            ),
            unpaid_through,
        }
    }

    /// A failed invoice for the period ending `period_end`: `past_due`, unless that period is
    /// paid for already (the failure of an attempt a later one made good).
    pub fn invoice_failed(self, period_end: i64) -> Billing {
        if self.paid_through.is_some_and(|paid| paid >= period_end) {
            return self;
        }
        Billing {
            status: self
                .status
                .apply(SubscriptionEvent::InvoiceFailed)
                .unwrap_or(self.status),
            unpaid_through: Some(
                self.unpaid_through
                    .map_or(period_end, |unpaid| unpaid.max(period_end)),
            ),
            ..self
        }
    }

    pub fn ended(self) -> Billing {
        Billing {
            status: self
                .status
                .apply(SubscriptionEvent::Ended)
                .unwrap_or(self.status),
            ..self
        }
    }
}

/// What one period of a subscription's plan costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanPrice<'a> {
    pub unit_amount_minor: i64,
    pub currency: &'a str,
}

/// What a paid invoice of a subscription reports, as far as its grant is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaidInvoice<'a> {
    /// It bills one whole period (the first, or a renewal), not a proration or a manual invoice.
    pub bills_a_period: bool,
    pub currency: &'a str,
    /// What is still owed on it; 0 when paid in full, however (card, balance, coupon).
    pub amount_remaining_minor: i64,
    /// The price its subscription line billed: the unit amount before any discount or tax, and
    /// the quantity. `None` when the invoice has no single subscription line Kassa can read.
    pub price: Option<(i64, i64)>,
}

/// What a paid invoice owes its subscription's customer (risk W6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodGrant {
    /// The period of the plan, paid in full: its credits, once. What was paid does not matter:
    /// a coupon, a customer balance or tax changes `amount_paid`, never the period bought.
    Grant,
    /// Not a period (a proration, a manual invoice): it buys no credits.
    NotAPeriod,
    /// A period at a price that is not the plan's (another currency, amount or quantity, or no
    /// readable subscription line): nothing is granted and a person is asked, never a guess.
    UnknownPrice,
    /// Reported paid with money still owed: nothing is granted and a person is asked.
    NotPaidInFull,
}

impl PeriodGrant {
    /// Whether a person must look at the invoice: a period was paid and nothing is granted.
    pub fn needs_attention(self) -> bool {
        matches!(self, PeriodGrant::UnknownPrice | PeriodGrant::NotPaidInFull)
    }

    /// The stable reason code a flag carries.
    pub fn reason_code(self) -> &'static str {
        match self {
            PeriodGrant::Grant => "granted",
            PeriodGrant::NotAPeriod => "not_a_period",
            PeriodGrant::UnknownPrice => "unknown_price",
            PeriodGrant::NotPaidInFull => "not_paid_in_full",
        }
    }
}

/// What a paid `invoice` of a subscription to a plan priced `plan` owes: the period's credits
/// when it bills one period of exactly the plan's price and is paid in full.
pub fn period_grant(plan: PlanPrice<'_>, invoice: PaidInvoice<'_>) -> PeriodGrant {
    if !invoice.bills_a_period {
        return PeriodGrant::NotAPeriod;
    }
    let plans_price = invoice.currency.eq_ignore_ascii_case(plan.currency)
        && invoice.price == Some((plan.unit_amount_minor, 1));
    if !plans_price {
        return PeriodGrant::UnknownPrice;
    }
    if invoice.amount_remaining_minor != 0 {
        return PeriodGrant::NotPaidInFull;
    }
    PeriodGrant::Grant
}

named_states! {
    pub enum EntryKind {
        /// Credits bought: a paid invoice's period, a paid credit pack.
        Grant => "grant",
        /// Credits spent.
        Debit => "debit",
        /// Credits taken back after a refund, never more than the balance holds.
        Clawback => "clawback",
    }
}

/// A debit that would take the balance below zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdraft {
    pub balance: i64,
}

/// The balance after spending `amount` (at least 1) of `balance`, or the refusal.
pub fn debit(balance: i64, amount: i64) -> Result<i64, Overdraft> {
    match balance.checked_sub(amount) {
        Some(left) if amount > 0 && left >= 0 => Ok(left),
        _ => Err(Overdraft { balance }),
    }
}

/// How much of `granted` a clawback takes back from `balance`: all of it if it is still there,
/// else what is left; never a negative balance.
pub fn clawback(balance: i64, granted: i64) -> i64 {
    granted.clamp(0, balance.max(0))
}

/// The credits a pack order's refunds take back in all: the share of `granted` that `refunded`
/// is of `captured`, rounded down (a refund of everything takes everything back).
pub fn refunded_share(granted: i64, refunded: i64, captured: i64) -> i64 {
    if captured <= 0 || granted <= 0 || refunded <= 0 {
        return 0;
    }
    let share = i128::from(granted) * i128::from(refunded.min(captured)) / i128::from(captured);
    i64::try_from(share).unwrap_or(granted)
}

/// What a pack order's clawbacks so far have settled: taken back from the balance, or recorded
/// as already spent (gone from the balance before the refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClawedBack {
    pub taken: i64,
    pub spent: i64,
}

/// The credits still to take back after refunds totalling `refunded` of `captured`: what must be
/// taken back in all, less what was already settled. A function of the total alone, so the
/// clawbacks add up to exactly [`refunded_share`] whatever the order, timing or number of the
/// refunds (never negative: a refund that fails later gives no credits back by itself).
pub fn clawback_due(granted: i64, refunded: i64, captured: i64, settled: ClawedBack) -> i64 {
    (refunded_share(granted, refunded, captured) - settled.taken - settled.spent).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscriptionEvent as E;
    use SubscriptionStatus as S;

    #[test]
    fn subscription_transition_table_is_exactly_this() {
        let allowed = [
            (S::Incomplete, E::InvoicePaid, S::Active),
            (S::Active, E::InvoicePaid, S::Active),
            (S::PastDue, E::InvoicePaid, S::Active),
            (S::Active, E::InvoiceFailed, S::PastDue),
            (S::PastDue, E::InvoiceFailed, S::PastDue),
            (S::Incomplete, E::Ended, S::Canceled),
            (S::Active, E::Ended, S::Canceled),
            (S::PastDue, E::Ended, S::Canceled),
        ];
        for &from in S::ALL {
            for event in [E::InvoicePaid, E::InvoiceFailed, E::Ended] {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                assert_eq!(from.apply(event).ok(), expected, "{from} on {event:?}");
            }
        }
    }

    #[test]
    fn a_held_plan_is_refused_returned_or_ended_by_this_table() {
        let (expires, now) = (1_000, 1_000);
        let table = [
            (S::Active, expires + 1, HeldPlan::Refuse),
            (S::Active, expires - 1, HeldPlan::Refuse),
            (S::PastDue, expires + 1, HeldPlan::Refuse),
            (S::PastDue, expires - 1, HeldPlan::Refuse),
            (S::Incomplete, expires + 1, HeldPlan::ReturnOpen),
            (S::Incomplete, expires, HeldPlan::EndThenRetry),
            (S::Incomplete, expires - 1, HeldPlan::EndThenRetry),
            (S::Canceled, expires + 1, HeldPlan::Start),
            (S::Canceled, expires - 1, HeldPlan::Start),
        ];
        for (status, page_expires_at, expected) in table {
            assert_eq!(
                held_plan(status, page_expires_at, now),
                expected,
                "{status} closing at {page_expires_at}"
            );
        }
        for &status in S::ALL {
            assert!(table.iter().any(|(s, _, _)| *s == status), "{status}");
        }
    }

    #[test]
    fn billing_takes_reports_in_any_order() {
        let new = Billing {
            status: S::Incomplete,
            paid_through: None,
            unpaid_through: None,
        };
        let first = new.invoice_paid(100);
        assert_eq!((first.status, first.paid_through), (S::Active, Some(100)));
        // The second period's invoice fails, then is paid.
        let failed = first.invoice_failed(200);
        assert_eq!(
            (failed.status, failed.unpaid_through),
            (S::PastDue, Some(200))
        );
        let paid = failed.invoice_paid(200);
        assert_eq!(
            paid,
            Billing {
                status: S::Active,
                paid_through: Some(200),
                unpaid_through: None
            }
        );
        // The failure reported after the payment that made it good changes nothing.
        assert_eq!(paid.invoice_failed(200), paid);
        // An old period's payment reported late does not hide a newer failure.
        let late = first.invoice_failed(300).invoice_paid(200);
        assert_eq!((late.status, late.unpaid_through), (S::PastDue, Some(300)));
        // A renewal's failure reported before the first payment: once that arrives, the
        // subscription has started and is past due, not stuck incomplete.
        let behind = new.invoice_failed(200).invoice_paid(100);
        assert_eq!(
            (behind.status, behind.unpaid_through),
            (S::PastDue, Some(200))
        );
        assert_eq!(behind.invoice_paid(200).status, S::Active);
        // Ended stays ended, whatever is paid after.
        let ended = paid.ended();
        assert_eq!(ended.status, S::Canceled);
        assert_eq!(ended.invoice_paid(300).status, S::Canceled);
        assert_eq!(ended.invoice_failed(400).status, S::Canceled);
    }

    /// Risk W6: a period of the plan's price paid in full grants whatever was paid (a coupon,
    /// a balance, tax); a proration buys nothing; another price or money still owed asks a
    /// person.
    #[test]
    fn risk_w6_a_period_is_granted_by_its_price_and_being_paid_in_full_not_by_the_amount_paid() {
        let plan = PlanPrice {
            unit_amount_minor: 900,
            currency: "eur",
        };
        let period = PaidInvoice {
            bills_a_period: true,
            currency: "EUR",
            amount_remaining_minor: 0,
            price: Some((900, 1)),
        };
        assert_eq!(period_grant(plan, period), PeriodGrant::Grant);
        let table = [
            (
                PaidInvoice {
                    bills_a_period: false,
                    ..period
                },
                PeriodGrant::NotAPeriod,
            ),
            (
                PaidInvoice {
                    currency: "usd",
                    ..period
                },
                PeriodGrant::UnknownPrice,
            ),
            (
                PaidInvoice {
                    price: Some((1_900, 1)),
                    ..period
                },
                PeriodGrant::UnknownPrice,
            ),
            (
                PaidInvoice {
                    price: Some((900, 2)),
                    ..period
                },
                PeriodGrant::UnknownPrice,
            ),
            (
                PaidInvoice {
                    price: None,
                    ..period
                },
                PeriodGrant::UnknownPrice,
            ),
            (
                PaidInvoice {
                    amount_remaining_minor: 300,
                    ..period
                },
                PeriodGrant::NotPaidInFull,
            ),
        ];
        for (invoice, expected) in table {
            assert_eq!(period_grant(plan, invoice), expected, "{invoice:?}");
            assert_eq!(
                expected.needs_attention(),
                expected != PeriodGrant::NotAPeriod,
                "{expected:?}"
            );
        }
        assert!(!PeriodGrant::Grant.needs_attention());
    }

    #[test]
    fn a_balance_is_never_driven_below_zero() {
        assert_eq!(debit(10, 10), Ok(0));
        assert_eq!(debit(10, 11), Err(Overdraft { balance: 10 }));
        assert_eq!(debit(10, 0), Err(Overdraft { balance: 10 }));
        assert_eq!(debit(10, -5), Err(Overdraft { balance: 10 }));
        assert_eq!(
            debit(i64::MIN, i64::MAX),
            Err(Overdraft { balance: i64::MIN })
        );
        assert_eq!(clawback(100, 30), 30);
        assert_eq!(clawback(20, 30), 20, "what is left");
        assert_eq!(clawback(0, 30), 0);
        assert_eq!(clawback(-5, 30), 0);
    }

    /// 100 credits for 1000, refunded 333, 333 and the rest: each clawback is what the total
    /// owes less what was settled, so the three add up to 100 in any order (and 20 × 49 plus the
    /// rest likewise).
    #[test]
    fn clawbacks_of_parts_add_up_to_the_whole_in_any_order() {
        for parts in [
            vec![333, 333, 334],
            vec![334, 333, 333],
            vec![333, 334, 333],
            [vec![49; 20], vec![20]].concat(),
        ] {
            let (mut refunded, mut settled) = (0, ClawedBack::default());
            for part in parts {
                refunded += part;
                settled.taken += clawback_due(100, refunded, 1000, settled);
            }
            assert_eq!((refunded, settled.taken), (1000, 100));
        }
        let spent = ClawedBack {
            taken: 10,
            spent: 20,
        };
        assert_eq!(clawback_due(100, 500, 1000, spent), 20);
        assert_eq!(clawback_due(100, 100, 1000, spent), 0, "never negative");
        assert_eq!(refunded_share(200, 1_000, 1_250), 160);
        assert_eq!(refunded_share(200, 1_250, 1_250), 200);
        assert_eq!(
            refunded_share(200, 5_000, 1_250),
            200,
            "never more than granted"
        );
        assert_eq!(refunded_share(3, 1, 2), 1, "rounded down");
        assert_eq!(refunded_share(i64::MAX, i64::MAX, i64::MAX), i64::MAX);
        assert_eq!(refunded_share(200, 100, 0), 0);
    }
}
