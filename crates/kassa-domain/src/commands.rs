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
        /// The janitor canceling an abandoned checkout whose stock hold expired; unlike a
        /// cancel, a payment found succeeded is kept, not refunded.
        Expire => "expire",
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
    /// What a capture in progress takes.
    pub capture_minor: Option<i64>,
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
/// total, which is never more than what was authorized. A capture already in progress (its
/// caller went away) is resumed with its own amount.
pub fn decide_capture(money: &OrderMoney, requested_minor: Option<i64>) -> Result<i64, Refusal> {
    if money.status != OrderStatus::Authorized {
        return Err(Refusal::InvalidState(format!(
            "only an authorized order can be captured; this one is {}",
            money.status
        )));
    }
    match (money.pending_operation, money.capture_minor) {
        (None, _) => {}
        (Some(Operation::Capture), Some(in_progress))
            if requested_minor.is_none_or(|requested| requested == in_progress) =>
        {
            return Ok(in_progress);
        }
        (Some(operation), _) => {
            return Err(Refusal::InvalidState(format!(
                "a {operation} of this order is in progress"
            )));
        }
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
    /// Already canceled (or, for a cancel already under way, fully refunded): nothing is left
    /// to do but clear the pending operation.
    AlreadyCanceled,
}

pub fn decide_cancel(
    money: &OrderMoney,
    payment: Option<PaymentStatus>,
) -> Result<CancelPath, Refusal> {
    match (money.status, money.pending_operation) {
        (OrderStatus::Canceled, _) | (OrderStatus::Refunded, Some(Operation::Cancel)) => {
            Ok(CancelPath::AlreadyCanceled)
        }
        (_, Some(Operation::Capture)) => Err(Refusal::InvalidState(
            "a capture of this order is in progress".into(),
        )),
        // A cancel after capture already under way: its refund is made under its own key, so
        // resuming asks for it again and gets the same one.
        (OrderStatus::Paid | OrderStatus::PartiallyRefunded, Some(Operation::Cancel)) => {
            Ok(CancelPath::RefundAll {
                amount_minor: money.refundable_minor(),
            })
        }
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

/// One line of a placed order as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_amount_minor: i64,
}

/// A requested line quantity (0 removes the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineChange {
    pub sku: String,
    pub quantity: i64,
}

/// A line an edit changes: its new quantity and amount, and the units given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditedLine {
    pub sku: String,
    pub quantity: i64,
    pub amount_minor: i64,
    pub released: i64,
}

/// What an edit does: the changed lines and the order's new total (the amount to capture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditPlan {
    pub lines: Vec<EditedLine>,
    pub total_minor: i64,
}

/// The one policy for changing an order after checkout (risks O1, O2, O3): nothing while a
/// capture or cancel is in progress; lines only while the payment is authorized and not yet
/// captured, and only down — anything that would raise the amount is refused, the customer
/// places a new order instead; the address while the order is not yet paid.
pub fn decide_edit(
    money: &OrderMoney,
    lines: &[HeldLine],
    changes: &[LineChange],
) -> Result<EditPlan, Refusal> {
    if let Some(operation) = money.pending_operation {
        return Err(Refusal::InvalidState(format!(
            "a {operation} of this order is in progress; it can no longer be changed"
        )));
    }
    // The address alone may change inside the window whether the payment is still pending,
    // authorized or (automatic capture) already captured: it moves no money and nothing has
    // shipped yet. Lines change money, so only an uncaptured authorization may lower them.
    let editable = if changes.is_empty() {
        matches!(
            money.status,
            OrderStatus::PendingPayment
                | OrderStatus::RequiresAction
                | OrderStatus::Authorized
                | OrderStatus::Paid
        )
    } else {
        money.status == OrderStatus::Authorized
    };
    if !editable {
        return Err(Refusal::InvalidState(if changes.is_empty() {
            format!("a {} order can no longer be changed", money.status)
        } else {
            format!(
                "lines can change only while the payment is authorized and not yet captured; this order is {}",
                money.status
            )
        }));
    }
    let mut edited: Vec<EditedLine> = Vec::with_capacity(changes.len());
    for change in changes {
        if edited.iter().any(|line| line.sku == change.sku) {
            return Err(Refusal::InvalidField {
                param: "lines",
                message: format!("{} appears twice", change.sku),
            });
        }
        let Some(held) = lines.iter().find(|line| line.sku == change.sku) else {
            return Err(raises_amount());
        };
        if change.quantity < 0 {
            return Err(Refusal::InvalidField {
                param: "lines",
                message: "quantities are 0 (remove the line) or more".into(),
            });
        }
        if change.quantity > held.quantity {
            return Err(raises_amount());
        }
        edited.push(EditedLine {
            sku: held.sku.clone(),
            quantity: change.quantity,
            amount_minor: held.unit_amount_minor.saturating_mul(change.quantity),
            released: held.quantity - change.quantity,
        });
    }
    let mut total_minor = 0i64;
    let mut kept = 0;
    for held in lines {
        let (quantity, amount) = match edited.iter().find(|line| line.sku == held.sku) {
            Some(line) => (line.quantity, line.amount_minor),
            None => (
                held.quantity,
                held.unit_amount_minor.saturating_mul(held.quantity),
            ),
        };
        total_minor = total_minor.saturating_add(amount);
        kept += usize::from(quantity > 0);
    }
    if kept == 0 {
        return Err(Refusal::InvalidState(
            "an edit cannot remove every line; cancel the order instead".into(),
        ));
    }
    edited.retain(|line| line.released > 0);
    Ok(EditPlan {
        lines: edited,
        total_minor,
    })
}

fn raises_amount() -> Refusal {
    Refusal::InvalidState(
        "an order's amount cannot go up after authorization: place a new order for more items"
            .into(),
    )
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
            capture_minor: None,
        }
    }

    fn held(sku: &str, quantity: i64) -> HeldLine {
        HeldLine {
            sku: sku.into(),
            quantity,
            unit_amount_minor: 100,
        }
    }

    fn change(sku: &str, quantity: i64) -> LineChange {
        LineChange {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn risk_o1_an_edit_changes_lines_and_amount_together() {
        let authorized = OrderMoney {
            captured_minor: 0,
            refunds_held_minor: 0,
            ..money(O::Authorized)
        };
        let lines = [held("A", 3), held("B", 2)];
        let plan =
            decide_edit(&authorized, &lines, &[change("A", 1), change("B", 0)]).expect("edit");
        assert_eq!(plan.total_minor, 100);
        assert_eq!(
            plan.lines
                .iter()
                .map(|l| (l.sku.as_str(), l.quantity, l.released))
                .collect::<Vec<_>>(),
            [("A", 1, 2), ("B", 0, 2)]
        );
        assert!(
            decide_edit(&authorized, &lines, &[change("A", 0), change("B", 0)]).is_err(),
            "not every line"
        );
        assert_eq!(
            decide_edit(&authorized, &lines, &[]).map(|p| p.total_minor),
            Ok(500),
            "address only"
        );
    }

    #[test]
    fn risk_o2_anything_that_raises_the_amount_is_refused_the_same_way() {
        let authorized = OrderMoney {
            captured_minor: 0,
            refunds_held_minor: 0,
            ..money(O::Authorized)
        };
        let lines = [held("A", 3)];
        let raise = decide_edit(&authorized, &lines, &[change("A", 4)]);
        let add = decide_edit(&authorized, &lines, &[change("NEW", 1)]);
        assert!(matches!(&raise, Err(Refusal::InvalidState(m)) if m.contains("place a new order")));
        assert_eq!(raise, add, "one policy");
        assert!(matches!(
            decide_edit(&money(O::Paid), &lines, &[change("A", 1)]),
            Err(Refusal::InvalidState(_))
        ));
        assert!(matches!(
            decide_edit(&money(O::PendingPayment), &lines, &[change("A", 1)]),
            Err(Refusal::InvalidState(_))
        ));
    }

    /// The address alone changes inside the window before shipping, captured or not; never
    /// after a refund or cancel.
    #[test]
    fn an_address_change_is_allowed_until_the_order_is_refunded_or_canceled() {
        let lines = [held("A", 3)];
        for status in [O::PendingPayment, O::RequiresAction, O::Authorized, O::Paid] {
            assert!(decide_edit(&money(status), &lines, &[]).is_ok(), "{status}");
        }
        for status in [O::PartiallyRefunded, O::Refunded, O::Canceled, O::Disputed] {
            assert!(
                decide_edit(&money(status), &lines, &[]).is_err(),
                "{status}"
            );
        }
    }

    #[test]
    fn risk_o3_no_edit_while_a_capture_is_in_progress() {
        let capturing = OrderMoney {
            pending_operation: Some(Operation::Capture),
            capture_minor: Some(300),
            captured_minor: 0,
            refunds_held_minor: 0,
            ..money(O::Authorized)
        };
        assert!(matches!(
            decide_edit(&capturing, &[held("A", 3)], &[change("A", 1)]),
            Err(Refusal::InvalidState(_))
        ));
        assert_eq!(
            decide_capture(&capturing, None),
            Ok(300),
            "the capture resumes"
        );
        assert!(decide_capture(&capturing, Some(200)).is_err());
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
