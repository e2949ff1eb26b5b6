//! Plans: what a provider event does to an order, decided by pure functions over a snapshot the
//! store loaded inside its transaction (with the order locked), the way `PriceCheck` decides a
//! checkout. The store applies a plan with compare-and-set writes; because the snapshot was
//! taken under the lock, a write that does not take is a bug, never a race.
//!
//! Every status a plan names comes from its state machine; a plan never invents one.

use crate::order::{OrderEvent, OrderStatus, event_for_payment};
use crate::payment::{PaymentEvent, PaymentStatus, check_capture};

/// One status move, as the machine decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move<S> {
    pub from: S,
    pub to: S,
}

/// What Kassa holds about a payment and its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSnapshot {
    pub order: OrderStatus,
    pub payment: PaymentStatus,
    pub amount_minor: i64,
    /// Lowercase ISO code, as stored.
    pub currency: String,
    /// What Kassa decided to capture (the order total unless a capture said less).
    pub to_capture_minor: i64,
}

/// What the provider reports about the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedPayment<'a> {
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub amount_received_minor: i64,
}

/// What happens to the order's reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockMove {
    Keep,
    /// Held reservations become sales; released ones are taken again, all or nothing — if the
    /// stock is gone the order is flagged and the order move is not made.
    Commit,
    Release,
}

/// The writes of an observed payment state, in the order the store makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMoves {
    pub payment: Move<PaymentStatus>,
    pub order: Option<(OrderEvent, Move<OrderStatus>)>,
    pub stock: StockMove,
    /// Set on the order as `captured_amount`.
    pub captured_minor: Option<i64>,
    /// The merchant notification this causes, written only with the order move.
    pub notify: Option<&'static str>,
    /// Also flag the order for a person (the payment moved, the order cannot follow).
    pub flag: Option<String>,
    /// Give the money back: it was taken for an order that is already canceled.
    pub refund_received: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentPlan {
    Apply(PaymentMoves),
    /// Move nothing; flag the order for a person with this reason.
    Flag(String),
    /// Nothing to do (a stale or repeated report); recorded with this reason.
    Ignore(String),
}

/// Decides what `seen` does to the payment and order in `held` (risks W5, W6, P7).
pub fn decide_payment(held: &PaymentSnapshot, seen: &ObservedPayment<'_>) -> PaymentPlan {
    if seen.amount_minor != held.amount_minor || seen.currency != held.currency {
        return PaymentPlan::Flag(format!(
            "amount_mismatch: provider reports {} {}, order expects {} {}",
            seen.amount_minor, seen.currency, held.amount_minor, held.currency
        ));
    }
    if seen.status == PaymentStatus::Succeeded
        && let Err(mismatch) = check_capture(held.to_capture_minor, seen.amount_received_minor)
    {
        return PaymentPlan::Flag(format!("capture_mismatch: {mismatch}"));
    }
    let Ok(payment_to) = held.payment.apply(PaymentEvent::Observed(seen.status)) else {
        return PaymentPlan::Ignore(format!(
            "stale: {} for a {} payment",
            seen.status, held.payment
        ));
    };
    let payment = Move {
        from: held.payment,
        to: payment_to,
    };
    let order = event_for_payment(payment_to).and_then(|event| {
        let to = held.order.apply(event).ok()?;
        Some((
            event,
            Move {
                from: held.order,
                to,
            },
        ))
    });
    let moves = PaymentMoves {
        payment,
        order,
        stock: StockMove::Keep,
        captured_minor: None,
        notify: None,
        flag: None,
        refund_received: false,
    };
    PaymentPlan::Apply(match (payment_to, order) {
        (PaymentStatus::Succeeded, Some(_)) => PaymentMoves {
            stock: StockMove::Commit,
            captured_minor: Some(seen.amount_received_minor),
            notify: Some("order.paid"),
            ..moves
        },
        // Money taken for an order already canceled (a second tab, a late 3-D Secure, a slow
        // payment method): record the truth, commit no stock, give the money back, announce it.
        (PaymentStatus::Succeeded, None) if held.order == OrderStatus::Canceled => PaymentMoves {
            captured_minor: Some(seen.amount_received_minor),
            notify: Some("order.refunded_after_cancel"),
            refund_received: true,
            ..moves
        },
        // Money taken for an order in no state to take it: a person decides.
        (PaymentStatus::Succeeded, None) => PaymentMoves {
            flag: Some(format!(
                "paid_while_{}: the payment succeeded but the order is {}",
                held.order, held.order
            )),
            ..moves
        },
        (PaymentStatus::Canceled, Some(_)) => PaymentMoves {
            stock: StockMove::Release,
            notify: Some("order.canceled"),
            ..moves
        },
        // Funds held (manual capture): the merchant may want to prepare the shipment.
        (PaymentStatus::RequiresCapture, Some(_)) => PaymentMoves {
            notify: Some("order.authorized"),
            ..moves
        },

        _ => moves,
    })
}

/// The attempt a payment's report says failed, if it does: the intent is back to waiting for a
/// payment method with an error from its latest charge. Each attempt is a charge of its own at
/// Stripe, so the merchant hears of each once (`payment.failed`), whether or not the report moves
/// anything (a first attempt's decline leaves the payment where it was).
pub fn failed_attempt<'a>(
    status: PaymentStatus,
    latest_charge: Option<&'a str>,
    last_error: Option<&str>,
) -> Option<&'a str> {
    match (status, last_error) {
        (PaymentStatus::RequiresPaymentMethod, Some(_)) => latest_charge,
        _ => None,
    }
}

/// The order move refunds totalling `refunded_minor` of `captured_minor` cause, if any. The
/// status follows the money that stands returned, both ways: a refund that fails after it
/// succeeded takes a `refunded` order back to `partially_refunded` or `paid`. A refund recorded
/// while the order cannot move (disputed, say) changes the amounts only.
pub fn decide_refunded(
    order: OrderStatus,
    captured_minor: i64,
    refunded_minor: i64,
) -> Option<(OrderEvent, Move<OrderStatus>)> {
    let event = if refunded_minor <= 0 {
        OrderEvent::RefundsReversed
    } else if refunded_minor >= captured_minor {
        OrderEvent::RefundedFully
    } else {
        OrderEvent::RefundedPartially
    };
    let to = order.apply(event).ok()?;
    (to != order).then_some((event, Move { from: order, to }))
}

/// The status a paid order's money gives it: `refunded` when refunds cover what was captured,
/// `partially_refunded` when they cover part, else `paid`. A dispute closing returns the order
/// to this, not to the status it had when the dispute opened: a refund may have failed (or
/// succeeded) meanwhile.
pub fn status_of_refunds(captured_minor: i64, refunded_minor: i64) -> OrderStatus {
    if refunded_minor <= 0 {
        OrderStatus::Paid
    } else if refunded_minor >= captured_minor {
        OrderStatus::Refunded
    } else {
        OrderStatus::PartiallyRefunded
    }
}

/// The order move a dispute opening or closing causes, if the order can make it.
pub fn decide_dispute(
    order: OrderStatus,
    before_dispute: Option<OrderStatus>,
    closed: bool,
) -> Option<(OrderEvent, Move<OrderStatus>)> {
    let event = if closed {
        OrderEvent::DisputeClosed {
            back_to: before_dispute.unwrap_or(OrderStatus::Paid),
        }
    } else {
        OrderEvent::DisputeOpened
    };
    let to = order.apply(event).ok()?;
    Some((event, Move { from: order, to }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus as O;
    use PaymentStatus as P;

    fn held(order: OrderStatus, payment: PaymentStatus) -> PaymentSnapshot {
        PaymentSnapshot {
            order,
            payment,
            amount_minor: 1999,
            currency: "eur".into(),
            to_capture_minor: 1999,
        }
    }

    fn seen(status: PaymentStatus, received: i64) -> ObservedPayment<'static> {
        ObservedPayment {
            status,
            amount_minor: 1999,
            currency: "eur",
            amount_received_minor: received,
        }
    }

    #[test]
    fn success_commits_stock_pays_and_notifies() {
        let plan = decide_payment(
            &held(O::PendingPayment, P::RequiresPaymentMethod),
            &seen(P::Succeeded, 1999),
        );
        let PaymentPlan::Apply(moves) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(moves.payment.to, P::Succeeded);
        assert_eq!(moves.order.map(|(_, m)| m.to), Some(O::Paid));
        assert_eq!(
            (moves.stock, moves.notify, moves.captured_minor),
            (StockMove::Commit, Some("order.paid"), Some(1999))
        );
    }

    #[test]
    fn risk_w6_short_capture_and_wrong_amounts_are_flagged() {
        let pending = held(O::PendingPayment, P::RequiresPaymentMethod);
        assert!(
            matches!(decide_payment(&pending, &seen(P::Succeeded, 1)), PaymentPlan::Flag(r) if r.starts_with("capture_mismatch"))
        );
        let other = ObservedPayment {
            currency: "usd",
            ..seen(P::Succeeded, 1999)
        };
        assert!(
            matches!(decide_payment(&pending, &other), PaymentPlan::Flag(r) if r.starts_with("amount_mismatch"))
        );
    }

    #[test]
    fn risk_p7_success_after_cancel_commits_nothing_and_is_refunded() {
        let plan = decide_payment(
            &held(O::Canceled, P::RequiresPaymentMethod),
            &seen(P::Succeeded, 1999),
        );
        let PaymentPlan::Apply(moves) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(
            moves.payment.to,
            P::Succeeded,
            "the provider's truth is recorded"
        );
        assert_eq!((moves.order, moves.stock), (None, StockMove::Keep));
        assert!(moves.refund_received);
        assert_eq!(moves.notify, Some("order.refunded_after_cancel"));
        let disputed = decide_payment(
            &held(O::Disputed, P::RequiresCapture),
            &seen(P::Succeeded, 1999),
        );
        assert!(
            matches!(disputed, PaymentPlan::Apply(m) if m.flag.is_some() && !m.refund_received)
        );
    }

    #[test]
    fn stale_reports_are_ignored_and_cancel_releases_once() {
        assert!(matches!(
            decide_payment(&held(O::Paid, P::Succeeded), &seen(P::RequiresAction, 0)),
            PaymentPlan::Ignore(_)
        ));
        let PaymentPlan::Apply(moves) = decide_payment(
            &held(O::PendingPayment, P::RequiresPaymentMethod),
            &seen(P::Canceled, 0),
        ) else {
            panic!()
        };
        assert_eq!(
            (moves.stock, moves.notify),
            (StockMove::Release, Some("order.canceled"))
        );
        let PaymentPlan::Apply(moves) = decide_payment(
            &held(O::Canceled, P::RequiresPaymentMethod),
            &seen(P::Canceled, 0),
        ) else {
            panic!()
        };
        assert_eq!(
            (moves.order, moves.stock, moves.notify),
            (None, StockMove::Keep, None),
            "already canceled locally"
        );
    }

    #[test]
    fn a_closed_dispute_returns_the_order_to_what_its_refunds_say() {
        assert_eq!(status_of_refunds(1999, 0), O::Paid);
        assert_eq!(status_of_refunds(1999, 500), O::PartiallyRefunded);
        assert_eq!(status_of_refunds(1999, 1999), O::Refunded);
        // Refunded when the dispute opened, the refund failed meanwhile: back to paid.
        let back = decide_dispute(O::Disputed, Some(status_of_refunds(1999, 0)), true);
        assert_eq!(back.map(|(_, m)| m.to), Some(O::Paid));
    }

    #[test]
    fn a_failed_attempt_is_a_decline_reported_with_its_charge() {
        let declined = failed_attempt(
            P::RequiresPaymentMethod,
            Some("ch_1"),
            Some("card_declined"),
        );
        assert_eq!(declined, Some("ch_1"));
        assert_eq!(
            failed_attempt(P::RequiresPaymentMethod, Some("ch_1"), None),
            None
        );
        assert_eq!(
            failed_attempt(P::RequiresPaymentMethod, None, Some("x")),
            None
        );
        assert_eq!(failed_attempt(P::Succeeded, Some("ch_1"), Some("x")), None);
    }

    #[test]
    fn refunds_and_disputes_move_the_order_only_where_the_machine_allows() {
        assert_eq!(
            decide_refunded(O::Paid, 1999, 500).map(|(_, m)| m.to),
            Some(O::PartiallyRefunded)
        );
        assert_eq!(
            decide_refunded(O::PartiallyRefunded, 1999, 1999).map(|(_, m)| m.to),
            Some(O::Refunded)
        );
        assert_eq!(decide_refunded(O::Disputed, 1999, 1999), None);
        assert_eq!(decide_refunded(O::Paid, 1999, 0), None);
        // A refund that failed after it succeeded: the status follows the money back.
        assert_eq!(
            decide_refunded(O::Refunded, 1999, 0).map(|(_, m)| m.to),
            Some(O::Paid)
        );
        assert_eq!(
            decide_refunded(O::PartiallyRefunded, 1999, 0).map(|(_, m)| m.to),
            Some(O::Paid)
        );
        assert_eq!(
            decide_refunded(O::Refunded, 1999, 500).map(|(_, m)| m.to),
            Some(O::PartiallyRefunded)
        );
        assert_eq!(decide_refunded(O::Canceled, 1999, 0), None);
        assert_eq!(
            decide_dispute(O::Paid, None, false).map(|(_, m)| m.to),
            Some(O::Disputed)
        );
        assert_eq!(
            decide_dispute(O::Disputed, Some(O::PartiallyRefunded), true).map(|(_, m)| m.to),
            Some(O::PartiallyRefunded)
        );
        assert_eq!(decide_dispute(O::Canceled, None, false), None);
    }
}
