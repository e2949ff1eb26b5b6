//! Commands on a placed order — refund, capture, cancel, edit — decided by pure functions over
//! what the store loaded with the order locked. The store applies the answer in the same
//! transaction, so two commands (or a command and a webhook) never both act on one state.

use crate::order::OrderStatus;
use crate::payment::PaymentStatus;
use crate::states::named_states;

named_states! {
    /// A provider call in progress on an order, taken with a compare-and-set before the call.
    pub enum Operation {
        Capture => "capture",
        Cancel => "cancel",
    }
}

/// An order's money as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderMoney {
    pub status: OrderStatus,
    pub pending_operation: Option<Operation>,
    pub total_minor: i64,
    pub captured_minor: i64,
    /// Refunds pending or succeeded: what is no longer refundable.
    pub refunds_held_minor: i64,
    /// What lost disputes took back.
    pub dispute_lost_minor: i64,
}

impl OrderMoney {
    pub fn refundable_minor(&self) -> i64 {
        (self.captured_minor - self.refunds_held_minor - self.dispute_lost_minor).max(0)
    }
}

/// Why a command was refused; each maps to one API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The order is not in a state that allows this (`invalid_state`).
    InvalidState(String),
    /// More than is refundable (`amount_exceeds_refundable`).
    ExceedsRefundable { refundable_minor: i64 },
    /// A field's value cannot be accepted (`invalid_request`).
    InvalidField {
        param: &'static str,
        message: String,
    },
}

/// How much a refund takes: `requested`, or everything still refundable (risk P6).
pub fn decide_refund(
    money: &OrderMoney,
    requested_minor: Option<i64>,
    restock: bool,
) -> Result<i64, Refusal> {
    match money.status {
        OrderStatus::Paid | OrderStatus::PartiallyRefunded => {}
        OrderStatus::Disputed => {
            return Err(Refusal::InvalidState(
                "the order has an open dispute; refunds wait until it closes".into(),
            ));
        }
        other => {
            return Err(Refusal::InvalidState(format!(
                "a {other} order has no captured payment to refund"
            )));
        }
    }
    let refundable = money.refundable_minor();
    let amount = requested_minor.unwrap_or(refundable);
    if amount < 1 {
        return match requested_minor {
            Some(_) => Err(Refusal::InvalidField {
                param: "amount",
                message: "must be at least 1 minor unit".into(),
            }),
            None => Err(Refusal::ExceedsRefundable {
                refundable_minor: refundable,
            }),
        };
    }
    if amount > refundable {
        return Err(Refusal::ExceedsRefundable {
            refundable_minor: refundable,
        });
    }
    if restock && amount != refundable {
        return Err(Refusal::InvalidField {
            param: "restock",
            message: "restock returns the whole order's stock, so the refund must cover \
                      everything still refundable"
                .into(),
        });
    }
    Ok(amount)
}

/// How much a capture takes: `requested`, or the order's total (after any edits). At most the
/// total, which is never more than what was authorized.
pub fn decide_capture(money: &OrderMoney, requested_minor: Option<i64>) -> Result<i64, Refusal> {
    if money.status != OrderStatus::Authorized {
        return Err(Refusal::InvalidState(format!(
            "only an authorized order can be captured; this one is {}",
            money.status
        )));
    }
    if let Some(operation) = money.pending_operation {
        return Err(Refusal::InvalidState(format!(
            "a {operation} of this order is in progress"
        )));
    }
    let amount = requested_minor.unwrap_or(money.total_minor);
    if !(1..=money.total_minor).contains(&amount) {
        return Err(Refusal::InvalidField {
            param: "amount",
            message: format!(
                "must be between 1 and the order total {}",
                money.total_minor
            ),
        });
    }
    Ok(amount)
}

/// What canceling an order means, given its state and its payment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelPath {
    /// Nothing captured: cancel the PaymentIntent at the provider first, then the order.
    AtProvider,
    /// Captured: a full refund of what is still refundable, with restock.
    RefundAll { amount_minor: i64 },
    /// Already canceled: answer with the order as it is.
    AlreadyCanceled,
}

pub fn decide_cancel(
    money: &OrderMoney,
    payment: Option<PaymentStatus>,
) -> Result<CancelPath, Refusal> {
    match (money.status, money.pending_operation) {
        (OrderStatus::Canceled, _) => Ok(CancelPath::AlreadyCanceled),
        (_, Some(Operation::Capture)) => Err(Refusal::InvalidState(
            "a capture of this order is in progress".into(),
        )),
        (
            OrderStatus::PendingPayment | OrderStatus::RequiresAction | OrderStatus::Authorized,
            _,
        ) => match payment {
            None | Some(PaymentStatus::Creating) => Err(Refusal::InvalidState(
                "the checkout is still creating its payment; retry in a moment".into(),
            )),
            Some(_) => Ok(CancelPath::AtProvider),
        },
        (OrderStatus::Paid | OrderStatus::PartiallyRefunded, _) => {
            let amount_minor = money.refundable_minor();
            if amount_minor < 1 {
                return Err(Refusal::InvalidState("nothing is left to refund".into()));
            }
            Ok(CancelPath::RefundAll { amount_minor })
        }
        (other, _) => Err(Refusal::InvalidState(format!(
            "a {other} order cannot be canceled"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus as O;

    fn money(status: OrderStatus) -> OrderMoney {
        OrderMoney {
            status,
            pending_operation: None,
            total_minor: 1000,
            captured_minor: 1000,
            refunds_held_minor: 300,
            dispute_lost_minor: 0,
        }
    }

    #[test]
    fn risk_p6_refunds_never_exceed_what_is_refundable() {
        let paid = money(O::PartiallyRefunded);
        assert_eq!(decide_refund(&paid, None, false), Ok(700));
        assert_eq!(decide_refund(&paid, Some(700), true), Ok(700));
        assert_eq!(
            decide_refund(&paid, Some(701), false),
            Err(Refusal::ExceedsRefundable {
                refundable_minor: 700
            })
        );
        assert!(matches!(
            decide_refund(&paid, Some(0), false),
            Err(Refusal::InvalidField {
                param: "amount",
                ..
            })
        ));
        assert!(matches!(
            decide_refund(&paid, Some(100), true),
            Err(Refusal::InvalidField {
                param: "restock",
                ..
            })
        ));
        let lost = OrderMoney {
            dispute_lost_minor: 700,
            ..paid
        };
        assert_eq!(
            decide_refund(&lost, None, false),
            Err(Refusal::ExceedsRefundable {
                refundable_minor: 0
            })
        );
        assert!(matches!(
            decide_refund(&money(O::Disputed), None, false),
            Err(Refusal::InvalidState(_))
        ));
        assert!(matches!(
            decide_refund(&money(O::Authorized), None, false),
            Err(Refusal::InvalidState(_))
        ));
    }

    #[test]
    fn risk_o3_capture_needs_an_authorized_order_with_nothing_in_progress() {
        let authorized = OrderMoney {
            captured_minor: 0,
            refunds_held_minor: 0,
            ..money(O::Authorized)
        };
        assert_eq!(decide_capture(&authorized, None), Ok(1000));
        assert_eq!(decide_capture(&authorized, Some(400)), Ok(400));
        assert!(decide_capture(&authorized, Some(1001)).is_err());
        let busy = OrderMoney {
            pending_operation: Some(Operation::Cancel),
            ..authorized
        };
        assert!(matches!(
            decide_capture(&busy, None),
            Err(Refusal::InvalidState(_))
        ));
        assert!(matches!(
            decide_capture(&money(O::Paid), None),
            Err(Refusal::InvalidState(_))
        ));
    }

    #[test]
    fn risk_p3_cancel_goes_to_the_provider_first_or_refunds() {
        let authorized = OrderMoney {
            captured_minor: 0,
            refunds_held_minor: 0,
            ..money(O::Authorized)
        };
        assert_eq!(
            decide_cancel(&authorized, Some(PaymentStatus::RequiresCapture)),
            Ok(CancelPath::AtProvider)
        );
        assert!(decide_cancel(&authorized, Some(PaymentStatus::Creating)).is_err());
        assert_eq!(
            decide_cancel(&money(O::Paid), Some(PaymentStatus::Succeeded)),
            Ok(CancelPath::RefundAll { amount_minor: 700 })
        );
        assert_eq!(
            decide_cancel(&money(O::Canceled), None),
            Ok(CancelPath::AlreadyCanceled)
        );
        let capturing = OrderMoney {
            pending_operation: Some(Operation::Capture),
            ..authorized
        };
        assert!(decide_cancel(&capturing, Some(PaymentStatus::RequiresCapture)).is_err());
    }
}
