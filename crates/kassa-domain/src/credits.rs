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
}
