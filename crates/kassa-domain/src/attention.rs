//! Orders flagged for a person (`needs_attention`) and the ways out of that state (risk N1).
//!
//! A flag is stored as `code: detail`: a stable reason code programs and metrics act on, then
//! words for the person. Each reason has the actions that resolve it. [`decide_resolution`]
//! decides what an action does to the order as the store holds it (the order locked); an action
//! that must ask the provider first ends in a [`Question`], and [`decide_answer`] decides what
//! the provider's answer does. The plans move the order only through its state machine, refunds
//! only within the refund bound, and the store clears the flag in the same transaction as the
//! moves, so a flag clears only when an action was applied — and with it the order's
//! background work (scheduled capture, the janitor, seller transfers, the checks) resumes.

use crate::commands::{OrderMoney, Refusal};
use crate::order::{OrderEvent, OrderStatus};
use crate::payment::{PaymentEvent, PaymentStatus};
use crate::plan::{Move, ObservedPayment};
use crate::states::named_states;

named_states! {
    /// What a person does about a flagged order (`POST /v1/orders/{id}/resolve`,
    /// `kassa resolve`).
    pub enum ResolveAction {
        /// Give the customer's money back with a refund at the provider.
        Refund => "refund",
        /// The stock is back: commit it and mark the paid order paid.
        Commit => "commit",
        /// Ask the provider again about what Kassa asked it (the same idempotency key).
        Retry => "retry",
        /// Apply what the provider holds now, through the plan a webhook goes through.
        Accept => "accept",
        /// Cancel an order nobody paid for, releasing its stock.
        Cancel => "cancel",
        /// A person checked and nothing is left for Kassa to do: the flag clears and the
        /// background work, which re-checks everything it touches, takes the order back.
        Dismiss => "dismiss",
    }
}

/// The names of every [`ResolveAction`], for the API's description.
pub const RESOLVE_ACTION_NAMES: &[&str] =
    &["refund", "commit", "retry", "accept", "cancel", "dismiss"];

/// Why Kassa flagged an order. Its code (stored before the flag's colon) never changes once
/// released: dashboards and alerts key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttentionReason {
    /// The provider reported another amount or currency than the order's.
    AmountMismatch,
    /// The provider captured another amount than Kassa decided to capture.
    CaptureMismatch,
    /// A payment succeeded for an order already paid, refunded or disputed (`paid_while_…`).
    PaidWhile(OrderStatus),
    /// The payment succeeded but the order's stock was released and sold meanwhile (risk G2).
    StockUnavailable,
    /// The provider never answered whether the checkout's payment was created.
    UnknownOutcome,
    /// A hosted page is complete (or expired) with no PaymentIntent behind it.
    HostedPageWithoutPayment,
    /// A refund reported succeeded failed later: the customer is not paid back.
    RefundReversed,
    /// A refund Kassa started on its own was refused.
    KassaRefundFailed,
    /// A refunded credit pack's credits were spent and could not be taken back.
    CreditsAlreadySpent,
    /// A write its plan said must take did not (a bug, or a database edited by hand).
    ImpossibleMove,
    /// Reconciliation found a difference with the provider it could not repair.
    Reconciliation,
}

impl AttentionReason {
    /// Every reason Kassa flags an order with.
    pub fn all() -> Vec<AttentionReason> {
        use AttentionReason as R;
        let mut all = vec![
            R::AmountMismatch,
            R::CaptureMismatch,
            R::StockUnavailable,
            R::UnknownOutcome,
            R::HostedPageWithoutPayment,
            R::RefundReversed,
            R::KassaRefundFailed,
            R::CreditsAlreadySpent,
            R::ImpossibleMove,
            R::Reconciliation,
        ];
        all.extend(
            OrderStatus::ALL
                .iter()
                .copied()
                .filter(|status| paid_while_possible(*status))
                .map(R::PaidWhile),
        );
        all
    }

    /// The stable code, as stored before the flag's colon and used as the metric's label.
    pub fn code(self) -> String {
        use AttentionReason as R;
        match self {
            R::AmountMismatch => "amount_mismatch".into(),
            R::CaptureMismatch => "capture_mismatch".into(),
            R::PaidWhile(status) => format!("{PAID_WHILE}{status}"),
            R::StockUnavailable => "stock_unavailable".into(),
            R::UnknownOutcome => "unknown_outcome".into(),
            R::HostedPageWithoutPayment => "hosted_page_without_payment".into(),
            R::RefundReversed => "refund_reversed".into(),
            R::KassaRefundFailed => "kassa_refund_failed".into(),
            R::CreditsAlreadySpent => "credits_already_spent".into(),
            R::ImpossibleMove => "impossible_move".into(),
            R::Reconciliation => "reconciliation".into(),
        }
    }

    /// The reason with this code, or `None` for a code this build does not know.
    pub fn parse(code: &str) -> Option<AttentionReason> {
        if let Some(status) = code.strip_prefix(PAID_WHILE) {
            return OrderStatus::parse(status)
                .filter(|status| paid_while_possible(*status))
                .map(AttentionReason::PaidWhile);
        }
        AttentionReason::all()
            .into_iter()
            .find(|reason| reason.code() == code)
    }

    /// The actions that resolve an order flagged for this reason.
    pub fn actions(self) -> &'static [ResolveAction] {
        use AttentionReason as R;
        use ResolveAction as A;
        match self {
            // What the provider holds decides; a report that was not about this payment (or is
            // settled at the provider) is only acknowledged.
            R::AmountMismatch | R::CaptureMismatch | R::ImpossibleMove | R::Reconciliation => {
                &[A::Accept, A::Dismiss]
            }
            // Money taken, stock gone: give it back, or sell the stock that came back. Never
            // just dismissed: the money would stay held with no outcome.
            R::StockUnavailable => &[A::Refund, A::Commit],
            // Never dismissed: the completer would flag it again at once.
            R::UnknownOutcome => &[A::Retry],
            R::HostedPageWithoutPayment => &[A::Retry, A::Cancel],
            R::RefundReversed | R::KassaRefundFailed => &[A::Refund, A::Dismiss],
            // The money was taken twice or for a settled order; a person settles it at the
            // provider (the second payment is outside this order's books).
            R::PaidWhile(_) | R::CreditsAlreadySpent => &[A::Dismiss],
        }
    }

    /// The stored text of a flag for this reason: `code: detail`.
    pub fn flag(self, detail: &str) -> String {
        format!("{}: {detail}", self.code())
    }
}

const PAID_WHILE: &str = "paid_while_";

/// Whether a payment can succeed for an order in `status` that cannot take it (the plan flags
/// `paid_while_{status}`; a canceled order's money is refunded instead).
fn paid_while_possible(status: OrderStatus) -> bool {
    status != OrderStatus::Canceled && status.apply(OrderEvent::PaymentSucceeded).is_err()
}

/// A stored flag, taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag<'a> {
    pub code: &'a str,
    pub detail: &'a str,
}

impl<'a> Flag<'a> {
    pub fn parse(text: &'a str) -> Flag<'a> {
        match text.split_once(':') {
            Some((code, detail)) => Flag {
                code: code.trim(),
                detail: detail.trim(),
            },
            None => Flag {
                code: text.trim(),
                detail: "",
            },
        }
    }

    pub fn reason(&self) -> Option<AttentionReason> {
        AttentionReason::parse(self.code)
    }

    /// The actions that resolve it. A code this build does not know (written by a newer
    /// version, or by hand) can be dismissed: no order is stuck for a spelling.
    pub fn actions(&self) -> &'static [ResolveAction] {
        self.reason()
            .map_or(&[ResolveAction::Dismiss], AttentionReason::actions)
    }
}

/// The code of a stored flag (the text before its first colon).
pub fn flag_code(text: &str) -> &str {
    Flag::parse(text).code
}

/// The order's latest payment as a resolution sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldPayment {
    /// `Creating` while the provider has nothing for it (no intent, no page).
    pub status: PaymentStatus,
    pub amount_minor: i64,
    /// What the provider reported received.
    pub received_minor: i64,
    pub has_intent: bool,
    pub has_hosted_page: bool,
}

/// The order's latest refund that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedRefund {
    pub amount_minor: i64,
    pub restock: bool,
}

/// What the store holds about a flagged order, read with the order locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionSnapshot {
    /// The stored flag, `code: detail`.
    pub flag: String,
    pub money: OrderMoney,
    pub payment: Option<HeldPayment>,
    pub failed_refund: Option<FailedRefund>,
}

/// What the provider is asked before an action can be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// The checkout's create call again, with its idempotency key: the provider returns what
    /// it made, or makes it now, or refuses.
    Checkout,
    /// The payment's PaymentIntent as it stands.
    Intent,
    /// The payment's hosted page (and its PaymentIntent, if it has one now).
    HostedPage,
}

/// What a resolution does, decided with the order locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolutionPlan {
    /// The flag clears; nothing else moves.
    Clear,
    /// The reservations are committed (all or nothing: refused while the stock is not there),
    /// the order is paid with what the provider received.
    CommitAndPay {
        order: Move<OrderStatus>,
        captured_minor: i64,
    },
    /// The order is canceled, its held stock released, and what the provider received
    /// recorded and refunded (`refund_minor`, nothing when refunds already returned it).
    CancelAndRefund {
        order: Move<OrderStatus>,
        captured_minor: i64,
        refund_minor: i64,
    },
    /// A new refund of this amount, recorded pending and sent with a key derived from Kassa's
    /// ids.
    Refund { amount_minor: i64, restock: bool },
    /// Nothing is decided before the provider answers ([`decide_answer`]).
    Ask(Question),
}

/// What the provider answered a [`Question`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// The PaymentIntent as the provider holds it now.
    Intent(ObservedPayment<'a>),
    /// The answer was applied through the usual path (a retried create, an expired page):
    /// the snapshot, read after it, shows what it did.
    Applied,
    /// The hosted page is complete with no PaymentIntent ever made for it: nothing was or can
    /// be charged through it.
    PageWithoutPayment,
}

/// What the provider's answer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerPlan {
    /// The flag clears and the intent is applied through `plan::decide_payment`, after what
    /// Kassa captures is set to `capture_minor` when given; refused when the plan flags again.
    Observe { capture_minor: Option<i64> },
    /// The flag clears; the answer already moved what it had to.
    Clear,
    /// An order nobody paid for is canceled and its held stock released; its payment, which
    /// nothing can be charged through any more, ends with it.
    CancelUnpaid {
        order: Move<OrderStatus>,
        payment: Option<Move<PaymentStatus>>,
    },
}

fn refused(message: impl Into<String>) -> Refusal {
    Refusal::InvalidState(message.into())
}

/// The flag's reason, if `action` resolves it; else the refusal naming the actions that do.
fn allowed(snapshot: &AttentionSnapshot, action: ResolveAction) -> Result<Flag<'_>, Refusal> {
    let flag = Flag::parse(&snapshot.flag);
    let actions = flag.actions();
    if actions.contains(&action) {
        return Ok(flag);
    }
    let names: Vec<&str> = actions.iter().map(|action| action.as_str()).collect();
    Err(refused(format!(
        "an order flagged {} is resolved by {}, not {action}",
        flag.code,
        names.join(" or ")
    )))
}

/// Decides what `action` does to the flagged order in `snapshot` (risk N1).
pub fn decide_resolution(
    snapshot: &AttentionSnapshot,
    action: ResolveAction,
) -> Result<ResolutionPlan, Refusal> {
    use AttentionReason as R;
    use ResolveAction as A;
    let flag = allowed(snapshot, action)?;
    let money = &snapshot.money;
    match (flag.reason(), action) {
        (_, A::Dismiss) => Ok(ResolutionPlan::Clear),
        (Some(R::StockUnavailable), A::Commit) => {
            let received = succeeded(snapshot)?;
            let to = money
                .status
                .apply(OrderEvent::PaymentSucceeded)
                .map_err(|_| refused(format!("a {} order cannot be paid", money.status)))?;
            Ok(ResolutionPlan::CommitAndPay {
                order: Move {
                    from: money.status,
                    to,
                },
                captured_minor: received,
            })
        }
        (Some(R::StockUnavailable), A::Refund) => {
            let received = succeeded(snapshot)?;
            let to = money
                .status
                .apply(OrderEvent::Cancel)
                .map_err(|_| refused(format!("a {} order cannot be canceled", money.status)))?;
            // Refunds the provider already made (from its dashboard, say) returned part of it.
            let refund_minor =
                (received - money.refunds_held_minor - money.dispute_lost_minor).max(0);
            Ok(ResolutionPlan::CancelAndRefund {
                order: Move {
                    from: money.status,
                    to,
                },
                captured_minor: received,
                refund_minor,
            })
        }
        (Some(R::RefundReversed | R::KassaRefundFailed), A::Refund) => {
            match money.status {
                OrderStatus::Paid
                | OrderStatus::PartiallyRefunded
                | OrderStatus::Refunded
                | OrderStatus::Canceled => {}
                OrderStatus::Disputed => {
                    return Err(refused(
                        "the order has an open dispute; refunds wait until it closes",
                    ));
                }
                other => {
                    return Err(refused(format!(
                        "a {other} order has no captured payment to refund"
                    )));
                }
            }
            let failed = snapshot
                .failed_refund
                .ok_or_else(|| refused("the order has no failed refund to make again"))?;
            let refundable = money.refundable_minor();
            let amount_minor = failed.amount_minor.min(refundable);
            if amount_minor < 1 {
                return Err(refused(
                    "nothing is left to refund (refunds since returned it): dismiss",
                ));
            }
            Ok(ResolutionPlan::Refund {
                amount_minor,
                // A restock returns the whole order's stock, so only with everything refunded.
                restock: failed.restock && amount_minor == refundable,
            })
        }
        (Some(R::UnknownOutcome), A::Retry) => Ok(ResolutionPlan::Ask(Question::Checkout)),
        (Some(R::HostedPageWithoutPayment), A::Retry | A::Cancel) => match snapshot.payment {
            Some(payment) if payment.has_hosted_page => {
                Ok(ResolutionPlan::Ask(Question::HostedPage))
            }
            _ => Err(refused(
                "the order has no hosted page to ask the provider about",
            )),
        },
        (_, A::Accept) => match snapshot.payment {
            Some(payment) if payment.has_intent => Ok(ResolutionPlan::Ask(Question::Intent)),
            _ => Err(refused(
                "the order's payment has no PaymentIntent to ask the provider about: dismiss",
            )),
        },
        (_, action) => Err(refused(format!(
            "{action} does not apply to an order flagged {}",
            flag.code
        ))),
    }
}

/// What the provider received for a payment it reports succeeded, or the refusal.
fn succeeded(snapshot: &AttentionSnapshot) -> Result<i64, Refusal> {
    match snapshot.payment {
        Some(payment) if payment.status == PaymentStatus::Succeeded => Ok(payment.received_minor),
        Some(payment) => Err(refused(format!(
            "the payment is {}, not succeeded",
            payment.status
        ))),
        None => Err(refused("the order has no payment")),
    }
}

/// Decides what the provider's `answer` to the question `action` asked does to the order in
/// `snapshot` (read again, with the order locked, after the answer).
pub fn decide_answer(
    snapshot: &AttentionSnapshot,
    action: ResolveAction,
    answer: &Answer<'_>,
) -> Result<AnswerPlan, Refusal> {
    use AttentionReason as R;
    use ResolveAction as A;
    let flag = allowed(snapshot, action)?;
    let money = &snapshot.money;
    match (flag.reason(), action, answer) {
        // What Kassa decided to capture becomes what the provider did capture: a person
        // accepts it (a partial capture from the provider's dashboard, say); any other
        // difference the plan still flags, and the resolution is refused.
        (Some(R::CaptureMismatch), A::Accept, Answer::Intent(seen))
            if seen.status == PaymentStatus::Succeeded =>
        {
            let to_capture = money.capture_minor.unwrap_or(money.total_minor);
            if seen.amount_received_minor == to_capture {
                return Ok(AnswerPlan::Observe {
                    capture_minor: None,
                });
            }
            if !(1..=seen.amount_minor).contains(&seen.amount_received_minor) {
                return Err(refused(format!(
                    "the provider reports {} received of {}",
                    seen.amount_received_minor, seen.amount_minor
                )));
            }
            Ok(AnswerPlan::Observe {
                capture_minor: Some(seen.amount_received_minor),
            })
        }
        (_, A::Accept, Answer::Intent(_))
        | (Some(R::HostedPageWithoutPayment), A::Retry, Answer::Intent(_)) => {
            Ok(AnswerPlan::Observe {
                capture_minor: None,
            })
        }
        (Some(R::HostedPageWithoutPayment), A::Cancel, Answer::Intent(_)) => Err(refused(
            "the provider now shows a PaymentIntent for the page: retry applies it",
        )),
        (Some(R::HostedPageWithoutPayment), A::Retry, Answer::PageWithoutPayment) => Err(refused(
            "the provider still shows no PaymentIntent for the page: cancel releases the order",
        )),
        (Some(R::HostedPageWithoutPayment), A::Cancel, Answer::PageWithoutPayment) => {
            let to = money
                .status
                .apply(OrderEvent::Cancel)
                .map_err(|_| refused(format!("a {} order cannot be canceled", money.status)))?;
            let payment = snapshot.payment.and_then(|payment| {
                let to = payment
                    .status
                    .apply(PaymentEvent::Observed(PaymentStatus::Canceled))
                    .ok()?;
                Some(Move {
                    from: payment.status,
                    to,
                })
            });
            Ok(AnswerPlan::CancelUnpaid {
                order: Move {
                    from: money.status,
                    to,
                },
                payment,
            })
        }
        // The page expired at the provider: applying that canceled the order.
        (Some(R::HostedPageWithoutPayment), A::Retry | A::Cancel, Answer::Applied)
            if !money.status.is_awaiting_payment() =>
        {
            Ok(AnswerPlan::Clear)
        }
        (Some(R::UnknownOutcome), A::Retry, Answer::Applied) => match snapshot.payment {
            Some(payment) if payment.status != PaymentStatus::Creating => Ok(AnswerPlan::Clear),
            _ => Err(refused(
                "the provider's answer is still unknown; retry in a moment",
            )),
        },
        _ => Err(refused(format!(
            "the provider's answer does not resolve an order flagged {}",
            flag.code
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttentionReason as R;
    use OrderStatus as O;
    use PaymentStatus as P;
    use ResolveAction as A;

    fn money(status: OrderStatus) -> OrderMoney {
        OrderMoney {
            status,
            pending_operation: None,
            total_minor: 2500,
            captured_minor: 0,
            refunds_held_minor: 0,
            dispute_lost_minor: 0,
            capture_minor: None,
        }
    }

    fn payment(status: PaymentStatus, received_minor: i64) -> Option<HeldPayment> {
        Some(HeldPayment {
            status,
            amount_minor: 2500,
            received_minor,
            has_intent: true,
            has_hosted_page: false,
        })
    }

    fn snapshot(reason: AttentionReason, status: OrderStatus) -> AttentionSnapshot {
        AttentionSnapshot {
            flag: reason.flag("details for a person"),
            money: money(status),
            payment: payment(P::Succeeded, 2500),
            failed_refund: None,
        }
    }

    #[test]
    fn every_reason_round_trips_its_code_and_has_an_action() {
        let all = AttentionReason::all();
        assert!(all.contains(&R::PaidWhile(O::Disputed)));
        assert!(
            !all.contains(&R::PaidWhile(O::Canceled)),
            "refunded, not flagged"
        );
        assert!(
            !all.contains(&R::PaidWhile(O::PendingPayment)),
            "paid, not flagged"
        );
        for reason in all {
            assert_eq!(AttentionReason::parse(&reason.code()), Some(reason));
            assert_eq!(Flag::parse(&reason.flag("x: y")).reason(), Some(reason));
            assert!(!reason.actions().is_empty(), "{reason:?} has a way out");
        }
        assert_eq!(AttentionReason::parse("paid_while_shipped"), None);
        let unknown = Flag::parse("something_new: from a later version");
        assert_eq!(
            (unknown.code, unknown.reason(), unknown.actions()),
            ("something_new", None, &[A::Dismiss][..])
        );
        let names: Vec<&str> = ResolveAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names, RESOLVE_ACTION_NAMES);
    }

    #[test]
    fn risk_n1_an_action_the_reason_does_not_take_is_refused_naming_those_it_does() {
        let held = snapshot(R::StockUnavailable, O::PendingPayment);
        let refusal = decide_resolution(&held, A::Dismiss);
        assert!(
            matches!(&refusal, Err(Refusal::InvalidState(m)) if m.contains("refund or commit")),
            "{refusal:?}"
        );
    }

    #[test]
    fn risk_n1_money_taken_stock_gone_is_committed_or_refunded_in_full() {
        let held = snapshot(R::StockUnavailable, O::PendingPayment);
        assert_eq!(
            decide_resolution(&held, A::Commit),
            Ok(ResolutionPlan::CommitAndPay {
                order: Move {
                    from: O::PendingPayment,
                    to: O::Paid
                },
                captured_minor: 2500
            })
        );
        assert_eq!(
            decide_resolution(&held, A::Refund),
            Ok(ResolutionPlan::CancelAndRefund {
                order: Move {
                    from: O::PendingPayment,
                    to: O::Canceled
                },
                captured_minor: 2500,
                refund_minor: 2500
            })
        );
        // A refund made at the provider's dashboard already returned part of it.
        let partly = AttentionSnapshot {
            money: OrderMoney {
                refunds_held_minor: 1000,
                ..held.money
            },
            ..held.clone()
        };
        assert!(matches!(
            decide_resolution(&partly, A::Refund),
            Ok(ResolutionPlan::CancelAndRefund {
                refund_minor: 1500,
                ..
            })
        ));
        let not_taken = AttentionSnapshot {
            payment: payment(P::RequiresPaymentMethod, 0),
            ..held
        };
        assert!(decide_resolution(&not_taken, A::Commit).is_err());
        assert!(decide_resolution(&not_taken, A::Refund).is_err());
    }

    #[test]
    fn risk_n1_a_failed_refund_is_made_again_within_what_is_refundable() {
        let held = AttentionSnapshot {
            money: OrderMoney {
                captured_minor: 2500,
                refunds_held_minor: 500,
                ..money(O::PartiallyRefunded)
            },
            failed_refund: Some(FailedRefund {
                amount_minor: 2500,
                restock: true,
            }),
            ..snapshot(R::KassaRefundFailed, O::PartiallyRefunded)
        };
        assert_eq!(
            decide_resolution(&held, A::Refund),
            Ok(ResolutionPlan::Refund {
                amount_minor: 2000,
                restock: true
            })
        );
        let disputed = AttentionSnapshot {
            money: OrderMoney {
                status: O::Disputed,
                ..held.money
            },
            ..held.clone()
        };
        assert!(decide_resolution(&disputed, A::Refund).is_err());
        let none_failed = AttentionSnapshot {
            failed_refund: None,
            ..held
        };
        assert!(decide_resolution(&none_failed, A::Refund).is_err());
    }

    #[test]
    fn risk_n1_provider_questions_and_their_answers() {
        let unknown = AttentionSnapshot {
            payment: Some(HeldPayment {
                status: P::Creating,
                amount_minor: 2500,
                received_minor: 0,
                has_intent: false,
                has_hosted_page: false,
            }),
            ..snapshot(R::UnknownOutcome, O::PendingPayment)
        };
        assert_eq!(
            decide_resolution(&unknown, A::Retry),
            Ok(ResolutionPlan::Ask(Question::Checkout))
        );
        assert!(
            decide_answer(&unknown, A::Retry, &Answer::Applied).is_err(),
            "still unknown"
        );
        let created = AttentionSnapshot {
            payment: payment(P::RequiresPaymentMethod, 0),
            ..unknown
        };
        assert_eq!(
            decide_answer(&created, A::Retry, &Answer::Applied),
            Ok(AnswerPlan::Clear)
        );

        let short = snapshot(R::CaptureMismatch, O::Authorized);
        assert_eq!(
            decide_resolution(&short, A::Accept),
            Ok(ResolutionPlan::Ask(Question::Intent))
        );
        let seen = ObservedPayment {
            status: P::Succeeded,
            amount_minor: 2500,
            currency: "eur",
            amount_received_minor: 2000,
        };
        assert_eq!(
            decide_answer(&short, A::Accept, &Answer::Intent(seen)),
            Ok(AnswerPlan::Observe {
                capture_minor: Some(2000)
            })
        );

        let page = AttentionSnapshot {
            payment: Some(HeldPayment {
                status: P::RequiresPaymentMethod,
                amount_minor: 2500,
                received_minor: 0,
                has_intent: false,
                has_hosted_page: true,
            }),
            ..snapshot(R::HostedPageWithoutPayment, O::PendingPayment)
        };
        assert_eq!(
            decide_resolution(&page, A::Cancel),
            Ok(ResolutionPlan::Ask(Question::HostedPage))
        );
        assert_eq!(
            decide_answer(&page, A::Cancel, &Answer::PageWithoutPayment),
            Ok(AnswerPlan::CancelUnpaid {
                order: Move {
                    from: O::PendingPayment,
                    to: O::Canceled
                },
                payment: Some(Move {
                    from: P::RequiresPaymentMethod,
                    to: P::Canceled
                })
            })
        );
        assert!(decide_answer(&page, A::Retry, &Answer::PageWithoutPayment).is_err());
        assert!(decide_answer(&page, A::Cancel, &Answer::Intent(seen)).is_err());
    }
}
