//! The circuit breaker around the provider calls that start new checkouts (risk G7); its rule is
//! `kassa_domain::breaker`. New checkouts (either flow) ask it before anything is reserved; every
//! create call of the checkout saga, whoever makes it (a new checkout, a customer's retry of a
//! placed one, the completer), reports its outcome. Webhooks, reconciliation, the completer,
//! captures, refunds and every other finishing of started work are never refused by it.
//!
//! One breaker per process: each `kassa serve` instance learns about Stripe from its own calls.

use std::sync::{Mutex, PoisonError};

use kassa_domain::breaker::{Admission, Breaker, BreakerRule, CallOutcome};

use crate::error::AppError;
use crate::ports::ProviderError;

pub(crate) struct ProviderBreaker {
    rule: BreakerRule,
    state: Mutex<Breaker>,
}

/// A new checkout let through. A probe's slot is given back when the pass is dropped, whatever
/// ended the checkout; if its provider call reported an outcome first, that outcome already
/// ended the half-open round and giving the slot back changes nothing.
pub(crate) struct Pass<'a> {
    breaker: &'a ProviderBreaker,
    probe_round: Option<i64>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some(round) = self.probe_round {
            self.breaker.update(|state| state.probe_ended(round));
        }
    }
}

impl ProviderBreaker {
    pub(crate) fn new(rule: BreakerRule) -> ProviderBreaker {
        ProviderBreaker {
            rule,
            state: Mutex::new(Breaker::CLOSED),
        }
    }

    /// Lets a new checkout call the provider at `now`, or refuses it with the 503 a provider
    /// outage gives, at once.
    pub(crate) fn admit(&self, now: i64) -> Result<Pass<'_>, AppError> {
        let mut admission = Admission::Call;
        self.update(|state| {
            let (next, decided) = state.admit(&self.rule, now);
            admission = decided;
            next
        });
        match admission {
            Admission::Call => Ok(Pass {
                breaker: self,
                probe_round: None,
            }),
            Admission::Probe { round } => {
                tracing::info!("payment provider breaker half open: probing with a checkout");
                Ok(Pass {
                    breaker: self,
                    probe_round: Some(round),
                })
            }
            Admission::Refuse { retry_after_secs } => {
                Err(AppError::ProviderUnavailable { retry_after_secs })
            }
        }
    }

    /// Reports what a checkout's provider call learned.
    pub(crate) fn record<T>(&self, result: &Result<T, ProviderError>, now: i64) {
        let outcome = match result {
            Ok(_) | Err(ProviderError::Definite { .. }) => CallOutcome::Answered,
            Err(ProviderError::Unknown { .. }) => CallOutcome::Unknown,
        };
        self.update(|state| state.record(&self.rule, outcome, now));
    }

    /// Whether new checkouts are being held back now.
    pub(crate) fn is_open(&self) -> bool {
        self.lock().is_open()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // The state is a plain value replaced whole: a panic elsewhere cannot leave it half made.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the state by `step`, saying so in the log when it opens or closes.
    fn update(&self, step: impl FnOnce(Breaker) -> Breaker) {
        let mut state = self.lock();
        let before = *state;
        *state = step(before);
        match (before.is_open(), *state) {
            (false, Breaker::Open { until }) => tracing::warn!(
                failures = self.rule.failures,
                cooldown_secs = self.rule.cooldown_secs,
                until,
                "payment provider breaker open: new checkouts answer 503 at once"
            ),
            (true, Breaker::Open { until }) if !matches!(before, Breaker::Open { .. }) => {
                tracing::warn!(
                    until,
                    "payment provider breaker open again: the probe failed"
                );
            }
            (true, Breaker::Closed { .. }) => {
                tracing::info!("payment provider breaker closed: the provider answers again");
            }
            _ => {}
        }
    }
}
