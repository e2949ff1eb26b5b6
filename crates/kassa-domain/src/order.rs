//! The order state machine: the one place an order status is decided.
//!
//! An order is created `pending_payment` with its total frozen. Payment events move it forward;
//! refunds and disputes move a paid order on. Every other move is an [`IllegalTransition`].
//! Storage applies the result with a compare-and-set on the old status.

use crate::states::{IllegalTransition, named_states};

named_states! {
    pub enum OrderStatus {
        PendingPayment => "pending_payment",
        RequiresAction => "requires_action",
        Authorized => "authorized",
        Paid => "paid",
        PartiallyRefunded => "partially_refunded",
        Refunded => "refunded",
        Canceled => "canceled",
        Disputed => "disputed",
    }
}

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The customer must authenticate (3-D Secure).
    PaymentRequiresAction,
    /// An attempt failed; the order stays payable.
    PaymentFailed,
    /// Funds are held, not yet captured (manual capture).
    PaymentAuthorized,
    /// Funds are captured.
    PaymentSucceeded,
    /// Canceled before any money was captured.
    Cancel,
    /// Part of the captured amount was refunded; some remains.
    RefundedPartially,
    /// Everything captured was refunded.
    RefundedFully,
    /// A refund reported succeeded has failed since, and nothing stands refunded any more: the
    /// order follows the money back to paid (a `refunded` status always means money returned).
    RefundsReversed,
    DisputeOpened,
    /// The dispute ended; the order returns to the status it had before.
    DisputeClosed {
        back_to: OrderStatus,
    },
}

impl OrderStatus {
    /// True while the customer can still pay (nothing captured or canceled yet).
    pub fn is_awaiting_payment(self) -> bool {
        matches!(
            self,
            OrderStatus::PendingPayment | OrderStatus::RequiresAction
        )
    }

    /// True once no payment event can change the order any more.
    pub fn is_terminal_for_payment(self) -> bool {
        !matches!(
            self,
            OrderStatus::PendingPayment | OrderStatus::RequiresAction | OrderStatus::Authorized
        )
    }

    /// The status after `event`, or the refusal.
    pub fn apply(self, event: OrderEvent) -> Result<OrderStatus, IllegalTransition> {
        use OrderEvent as E;
        use OrderStatus as S;
        let next = match (self, event) {
            (S::PendingPayment, E::PaymentRequiresAction) => S::RequiresAction,
            (S::PendingPayment | S::RequiresAction, E::PaymentFailed) => S::PendingPayment,
            (S::PendingPayment | S::RequiresAction, E::PaymentAuthorized) => S::Authorized,
            (S::PendingPayment | S::RequiresAction | S::Authorized, E::PaymentSucceeded) => S::Paid,
            (S::PendingPayment | S::RequiresAction | S::Authorized, E::Cancel) => S::Canceled,
            // From `refunded` too: a refund that failed after it succeeded leaves only part
            // of the money returned.
            (S::Paid | S::PartiallyRefunded | S::Refunded, E::RefundedPartially) => {
                S::PartiallyRefunded
            }
            (S::Paid | S::PartiallyRefunded, E::RefundedFully) => S::Refunded,
            (S::PartiallyRefunded | S::Refunded, E::RefundsReversed) => S::Paid,
            (S::Paid | S::PartiallyRefunded | S::Refunded, E::DisputeOpened) => S::Disputed,
            (S::Disputed, E::DisputeClosed { back_to })
                if matches!(back_to, S::Paid | S::PartiallyRefunded | S::Refunded) =>
            {
                back_to
            }
            (from, event) => {
                return Err(IllegalTransition {
                    from: from.as_str(),
                    event: format!("{event:?}"),
                });
            }
        };
        Ok(next)
    }
}

/// The order event a payment reaching `status` means, if any.
pub fn event_for_payment(status: crate::payment::PaymentStatus) -> Option<OrderEvent> {
    use crate::payment::PaymentStatus as P;
    match status {
        P::RequiresAction => Some(OrderEvent::PaymentRequiresAction),
        P::RequiresPaymentMethod => Some(OrderEvent::PaymentFailed),
        P::RequiresCapture => Some(OrderEvent::PaymentAuthorized),
        P::Succeeded => Some(OrderEvent::PaymentSucceeded),
        P::Canceled => Some(OrderEvent::Cancel),
        P::Creating | P::Processing | P::Failed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderEvent as E;
    use OrderStatus as S;

    const EVENTS: &[OrderEvent] = &[
        E::PaymentRequiresAction,
        E::PaymentFailed,
        E::PaymentAuthorized,
        E::PaymentSucceeded,
        E::Cancel,
        E::RefundedPartially,
        E::RefundedFully,
        E::RefundsReversed,
        E::DisputeOpened,
        E::DisputeClosed { back_to: S::Paid },
        E::DisputeClosed {
            back_to: S::Refunded,
        },
        E::DisputeClosed {
            back_to: S::Canceled,
        },
    ];

    /// Every (state, event) pair: the allowed ones with their result, all others refused.
    #[test]
    fn transition_table_is_exactly_this() {
        let allowed: &[(OrderStatus, OrderEvent, OrderStatus)] = &[
            (
                S::PendingPayment,
                E::PaymentRequiresAction,
                S::RequiresAction,
            ),
            (S::PendingPayment, E::PaymentFailed, S::PendingPayment),
            (S::RequiresAction, E::PaymentFailed, S::PendingPayment),
            (S::PendingPayment, E::PaymentAuthorized, S::Authorized),
            (S::RequiresAction, E::PaymentAuthorized, S::Authorized),
            (S::PendingPayment, E::PaymentSucceeded, S::Paid),
            (S::RequiresAction, E::PaymentSucceeded, S::Paid),
            (S::Authorized, E::PaymentSucceeded, S::Paid),
            (S::PendingPayment, E::Cancel, S::Canceled),
            (S::RequiresAction, E::Cancel, S::Canceled),
            (S::Authorized, E::Cancel, S::Canceled),
            (S::Paid, E::RefundedPartially, S::PartiallyRefunded),
            (
                S::PartiallyRefunded,
                E::RefundedPartially,
                S::PartiallyRefunded,
            ),
            (S::Refunded, E::RefundedPartially, S::PartiallyRefunded),
            (S::Paid, E::RefundedFully, S::Refunded),
            (S::PartiallyRefunded, E::RefundsReversed, S::Paid),
            (S::Refunded, E::RefundsReversed, S::Paid),
            (S::PartiallyRefunded, E::RefundedFully, S::Refunded),
            (S::Paid, E::DisputeOpened, S::Disputed),
            (S::PartiallyRefunded, E::DisputeOpened, S::Disputed),
            (S::Refunded, E::DisputeOpened, S::Disputed),
            (S::Disputed, E::DisputeClosed { back_to: S::Paid }, S::Paid),
            (
                S::Disputed,
                E::DisputeClosed {
                    back_to: S::Refunded,
                },
                S::Refunded,
            ),
        ];
        for &from in S::ALL {
            for &event in EVENTS {
                let expected = allowed
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (from.apply(event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {event:?}"),
                    (Err(_), None) => {}
                    (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for &status in S::ALL {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
        assert_eq!(S::parse("shipped"), None);
    }
}
