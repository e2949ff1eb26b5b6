//! The reservation state machine: stock held for one order line at one location.
//!
//! Held stock is counted in `reserved`; commit moves it to `committed` when the payment
//! succeeds; release returns it to `available` when the order is canceled or abandoned. Both are
//! final, so stock can never be committed and released for the same reservation.

use crate::states::{IllegalTransition, named_states};

named_states! {
    pub enum ReservationStatus {
        Held => "held",
        Committed => "committed",
        Released => "released",
        /// Sold, then given back by a refund with restock.
        Returned => "returned",
        /// Taken out of the order by an edit: final, never committed again.
        Removed => "removed",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationEvent {
    Commit,
    Release,
    /// The payment succeeded after the reservation was released (an expired checkout paid
    /// after all): the stock is taken again, straight into committed, if it is still there.
    CommitAfterRelease,
    /// A refund with restock gave the sold stock back.
    Return,
    /// An order edit removed the line this reservation held.
    Remove,
}

impl ReservationStatus {
    pub fn apply(self, event: ReservationEvent) -> Result<ReservationStatus, IllegalTransition> {
        match (self, event) {
            (ReservationStatus::Held, ReservationEvent::Commit) => Ok(ReservationStatus::Committed),
            (ReservationStatus::Held, ReservationEvent::Release) => Ok(ReservationStatus::Released),
            (ReservationStatus::Released, ReservationEvent::CommitAfterRelease) => {
                Ok(ReservationStatus::Committed)
            }
            (ReservationStatus::Committed, ReservationEvent::Return) => {
                Ok(ReservationStatus::Returned)
            }
            (ReservationStatus::Held, ReservationEvent::Remove) => Ok(ReservationStatus::Removed),
            (from, event) => Err(IllegalTransition {
                from: from.as_str(),
                event: format!("{event:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReservationEvent as E;
    use ReservationStatus as S;

    #[test]
    fn transition_table_is_exactly_this() {
        for &from in S::ALL {
            for event in [
                E::Commit,
                E::Release,
                E::CommitAfterRelease,
                E::Return,
                E::Remove,
            ] {
                let expected = match (from, event) {
                    (S::Held, E::Commit) => Some(S::Committed),
                    (S::Held, E::Release) => Some(S::Released),
                    (S::Released, E::CommitAfterRelease) => Some(S::Committed),
                    (S::Committed, E::Return) => Some(S::Returned),
                    (S::Held, E::Remove) => Some(S::Removed),
                    _ => None,
                };
                assert_eq!(from.apply(event).ok(), expected, "{from} + {event:?}");
            }
        }
    }
}
