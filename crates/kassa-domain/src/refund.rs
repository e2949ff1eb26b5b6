//! The refund state machine, mirroring Stripe's refund statuses.
//!
//! A refund row is written `pending` before the provider is asked, so a retried request finds it
//! (risk P6). Stripe may report a refund `failed` even after `succeeded` (the bank returned it),
//! so that one late edge is allowed; nothing else leaves a final state.

use crate::states::{IllegalTransition, named_states};

named_states! {
    pub enum RefundStatus {
        Pending => "pending",
        Succeeded => "succeeded",
        Failed => "failed",
        Canceled => "canceled",
    }
}

impl RefundStatus {
    /// The status after the provider reports `to`, or the refusal.
    pub fn apply(self, to: RefundStatus) -> Result<RefundStatus, IllegalTransition> {
        use RefundStatus as S;
        match (self, to) {
            (S::Pending, S::Succeeded | S::Failed | S::Canceled) | (S::Succeeded, S::Failed) => {
                Ok(to)
            }
            (from, to) => Err(IllegalTransition {
                from: from.as_str(),
                event: format!("reported {to}"),
            }),
        }
    }

    /// True if this refund's amount counts against what is still refundable.
    pub fn holds_amount(self) -> bool {
        matches!(self, RefundStatus::Pending | RefundStatus::Succeeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefundStatus as S;

    #[test]
    fn transition_table_is_exactly_this() {
        let allowed = [
            (S::Pending, S::Succeeded),
            (S::Pending, S::Failed),
            (S::Pending, S::Canceled),
            (S::Succeeded, S::Failed),
        ];
        for &from in S::ALL {
            for &to in S::ALL {
                let ok = allowed.contains(&(from, to));
                assert_eq!(from.apply(to).is_ok(), ok, "{from} -> {to}");
            }
        }
    }
}
