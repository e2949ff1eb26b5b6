//! The payment state machine: Kassa's record of one PaymentIntent attempt for an order.
//!
//! A payment row is written (`creating`) *before* the PaymentIntent is created at the provider,
//! so any event the provider sends is for a payment Kassa already knows (risk G1, P1). After
//! that the provider's view moves it, forward only: terminal states absorb every later event,
//! and an older event arriving late is refused, never applied backwards. The one backward edge is
//! Stripe's own: a failed attempt returns the intent to `requires_payment_method`.

use crate::states::{IllegalTransition, named_states};

named_states! {
    pub enum PaymentStatus {
        /// Local row committed; the provider call may or may not have happened yet.
        Creating => "creating",
        RequiresPaymentMethod => "requires_payment_method",
        RequiresAction => "requires_action",
        Processing => "processing",
        /// Authorized, waiting for capture.
        RequiresCapture => "requires_capture",
        Succeeded => "succeeded",
        Canceled => "canceled",
        /// The provider definitely refused to create the intent; nothing exists there.
        Failed => "failed",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    /// The provider created the intent (it awaits a payment method).
    Created,
    /// The provider definitely did not create the intent.
    CreateFailed,
    /// The provider reports the intent in this status (webhook, confirm response, re-fetch).
    Observed(PaymentStatus),
}

impl PaymentStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded | PaymentStatus::Canceled | PaymentStatus::Failed
        )
    }

    /// How far along the happy path a status is; used to refuse stale events.
    fn progress(self) -> u8 {
        match self {
            PaymentStatus::Creating => 0,
            PaymentStatus::RequiresPaymentMethod => 1,
            PaymentStatus::RequiresAction => 2,
            PaymentStatus::Processing => 3,
            PaymentStatus::RequiresCapture => 4,
            PaymentStatus::Succeeded | PaymentStatus::Canceled | PaymentStatus::Failed => 5,
        }
    }

    pub fn apply(self, event: PaymentEvent) -> Result<PaymentStatus, IllegalTransition> {
        use PaymentStatus as S;
        let next = match (self, event) {
            (S::Creating, PaymentEvent::Created) => Some(S::RequiresPaymentMethod),
            (S::Creating, PaymentEvent::CreateFailed) => Some(S::Failed),
            (from, PaymentEvent::Observed(to))
                if !from.is_terminal() && to != S::Creating && to != S::Failed =>
            {
                let failed_attempt = to == S::RequiresPaymentMethod
                    && matches!(from, S::RequiresAction | S::Processing);
                (to.progress() > from.progress() || failed_attempt).then_some(to)
            }
            _ => None,
        };
        next.ok_or_else(|| IllegalTransition {
            from: self.as_str(),
            event: format!("{event:?}"),
        })
    }
}

/// A succeeded payment whose captured amount is not what Kassa decided to capture (risk W6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureMismatch {
    pub to_capture_minor: i64,
    pub received_minor: i64,
}

impl std::fmt::Display for CaptureMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the provider captured {} but Kassa decided to capture {}",
            self.received_minor, self.to_capture_minor
        )
    }
}

/// An order is paid only when the provider captured exactly the amount Kassa decided to capture.
/// Less is a partial capture (or a forged or broken report); more cannot be explained. Either
/// way it goes to an operator, never to "paid".
pub fn check_capture(to_capture_minor: i64, received_minor: i64) -> Result<(), CaptureMismatch> {
    if received_minor == to_capture_minor {
        Ok(())
    } else {
        Err(CaptureMismatch {
            to_capture_minor,
            received_minor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentStatus as S;

    #[test]
    fn risk_w6_only_the_exact_captured_amount_counts_as_paid() {
        assert_eq!(check_capture(1999, 1999), Ok(()));
        for received in [0, 1, 1998, 2000, -1] {
            assert!(check_capture(1999, received).is_err(), "{received}");
        }
    }

    fn events() -> Vec<PaymentEvent> {
        let mut all = vec![PaymentEvent::Created, PaymentEvent::CreateFailed];
        all.extend(S::ALL.iter().map(|s| PaymentEvent::Observed(*s)));
        all
    }

    #[test]
    fn transition_table_is_exactly_this() {
        let observed = |to| PaymentEvent::Observed(to);
        let mut allowed = vec![
            (S::Creating, PaymentEvent::Created, S::RequiresPaymentMethod),
            (S::Creating, PaymentEvent::CreateFailed, S::Failed),
            (
                S::RequiresAction,
                observed(S::RequiresPaymentMethod),
                S::RequiresPaymentMethod,
            ),
            (
                S::Processing,
                observed(S::RequiresPaymentMethod),
                S::RequiresPaymentMethod,
            ),
        ];
        let chain = [
            S::Creating,
            S::RequiresPaymentMethod,
            S::RequiresAction,
            S::Processing,
            S::RequiresCapture,
        ];
        for (i, from) in chain.iter().enumerate() {
            for to in chain[i + 1..].iter().chain(&[S::Succeeded, S::Canceled]) {
                allowed.push((*from, observed(*to), *to));
            }
        }
        for &from in S::ALL {
            for event in events() {
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
    fn a_late_event_never_moves_a_payment_backwards() {
        assert!(
            S::Succeeded
                .apply(PaymentEvent::Observed(S::RequiresAction))
                .is_err()
        );
        assert!(
            S::Canceled
                .apply(PaymentEvent::Observed(S::Succeeded))
                .is_err()
        );
        assert!(
            S::RequiresCapture
                .apply(PaymentEvent::Observed(S::RequiresPaymentMethod))
                .is_err()
        );
    }
}
