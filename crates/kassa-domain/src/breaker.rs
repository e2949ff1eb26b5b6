//! The circuit breaker in front of the payment provider (risk G7). When Stripe hangs, every
//! checkout would otherwise wait out the adapter's whole retry budget (about 47 s with the
//! defaults) before its 503, holding a customer, a task and a connection the whole time. After a
//! run of calls whose outcome is unknown (timeouts, 5xx, lost connections) the breaker *opens*:
//! new checkouts are refused at once, before anything is reserved, for a cool-down. Then it is
//! *half open*: a few checkouts are let through as probes, and the first of them to learn
//! anything decides — an answer closes it, another unknown outcome opens it for another
//! cool-down.
//!
//! Only the admission of new work is decided here. Which calls are gated and which only report
//! their outcome (finishing work already started) is the caller's choice.
//!
//! A pure state machine: time is passed in, and the caller keeps the state.

/// When the breaker opens, for how long, and how many probes it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerRule {
    /// Unknown outcomes in a row that open the breaker; 0 turns it off.
    pub failures: u32,
    /// How long it stays open before probing, in seconds.
    pub cooldown_secs: i64,
    /// How many calls may be probing at once while it is half open (at least 1).
    pub probes: u32,
}

impl BreakerRule {
    /// Never opens.
    pub const OFF: BreakerRule = BreakerRule {
        failures: 0,
        cooldown_secs: 30,
        probes: 1,
    };
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    /// Calls go through; `unknown_in_a_row` counts the run of unknown outcomes so far.
    Closed { unknown_in_a_row: u32 },
    /// Calls are refused until `until` (seconds since the epoch).
    Open { until: i64 },
    /// The cool-down is over: up to the rule's `probes` calls at once test the provider. `round`
    /// (when it began) tells one half-open spell's probes from a later one's.
    HalfOpen { round: i64, probing: u32 },
}

/// Whether a new call may be made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: make the call.
    Call,
    /// Half open: make the call as a probe of `round`; report its outcome, or
    /// [`Breaker::probe_ended`] if it ended without one.
    Probe { round: i64 },
    /// Open (or every probe slot taken): do not call; the provider may be asked again after
    /// this many seconds.
    Refuse { retry_after_secs: i64 },
}

/// What one call to the provider learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The provider answered: a success or a definite refusal (a declined card is an answer).
    Answered,
    /// Nobody knows what happened: a timeout, a 5xx or 429 after the retries, a lost connection.
    Unknown,
}

/// How long a refused caller is told to wait while probes are running: their answer comes
/// within one provider call's time, so soon, but not at once.
const PROBING_RETRY_AFTER_MAX_SECS: i64 = 5;

impl Breaker {
    pub const CLOSED: Breaker = Breaker::Closed {
        unknown_in_a_row: 0,
    };

    /// Whether a new call may be made at `now`, and the state after admitting (or refusing) it.
    pub fn admit(self, rule: &BreakerRule, now: i64) -> (Breaker, Admission) {
        match self {
            Breaker::Closed { .. } => (self, Admission::Call),
            Breaker::Open { until } if now >= until => (
                Breaker::HalfOpen {
                    round: now,
                    probing: 1,
                },
                Admission::Probe { round: now },
            ),
            Breaker::Open { until } => (
                self,
                Admission::Refuse {
                    retry_after_secs: (until - now).max(1),
                },
            ),
            Breaker::HalfOpen { round, probing } if probing < rule.probes.max(1) => (
                Breaker::HalfOpen {
                    round,
                    probing: probing + 1,
                },
                Admission::Probe { round },
            ),
            Breaker::HalfOpen { .. } => (
                self,
                Admission::Refuse {
                    retry_after_secs: rule.cooldown_secs.clamp(1, PROBING_RETRY_AFTER_MAX_SECS),
                },
            ),
        }
    }

    /// The state after a call's `outcome` is known at `now`. Every call the caller reports
    /// counts, admitted or not (work already started is finished without asking): while closed
    /// its outcome extends or ends the run of unknowns, while half open the first outcome
    /// decides. While open, outcomes change nothing: they are of calls made before it opened
    /// or of work being finished, and the cool-down stands until the probes ask.
    pub fn record(self, rule: &BreakerRule, outcome: CallOutcome, now: i64) -> Breaker {
        let reopened = Breaker::Open {
            until: now.saturating_add(rule.cooldown_secs.max(1)),
        };
        match (self, outcome) {
            (Breaker::Closed { .. }, CallOutcome::Answered) => Breaker::CLOSED,
            (Breaker::Closed { unknown_in_a_row }, CallOutcome::Unknown) => {
                let unknown_in_a_row = unknown_in_a_row.saturating_add(1);
                if rule.failures > 0 && unknown_in_a_row >= rule.failures {
                    reopened
                } else {
                    Breaker::Closed { unknown_in_a_row }
                }
            }
            (Breaker::Open { .. }, _) => self,
            (Breaker::HalfOpen { .. }, CallOutcome::Answered) => Breaker::CLOSED,
            (Breaker::HalfOpen { .. }, CallOutcome::Unknown) => reopened,
        }
    }

    /// A probe of `round` ended without reaching the provider (the checkout was refused
    /// locally, or its request went away): its slot is free for another probe. A probe of an
    /// earlier half-open spell changes nothing.
    pub fn probe_ended(self, round: i64) -> Breaker {
        match self {
            Breaker::HalfOpen {
                round: current,
                probing,
            } if current == round => Breaker::HalfOpen {
                round,
                probing: probing.saturating_sub(1),
            },
            _ => self,
        }
    }

    /// Whether new calls are being held back (open, or half open with only probes let through).
    pub fn is_open(self) -> bool {
        !matches!(self, Breaker::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: BreakerRule = BreakerRule {
        failures: 3,
        cooldown_secs: 30,
        probes: 2,
    };

    fn after(outcomes: &[CallOutcome], now: i64) -> Breaker {
        outcomes.iter().fold(Breaker::CLOSED, |state, outcome| {
            state.record(&RULE, *outcome, now)
        })
    }

    #[test]
    fn risk_g7_opens_after_a_run_of_unknown_outcomes_only() {
        use CallOutcome::{Answered, Unknown};
        assert_eq!(
            after(&[Unknown, Unknown], 100),
            Breaker::Closed {
                unknown_in_a_row: 2
            }
        );
        // An answer in between ends the run: the provider is slow now and then, not down.
        assert_eq!(
            after(&[Unknown, Unknown, Answered, Unknown, Unknown], 100),
            Breaker::Closed {
                unknown_in_a_row: 2
            }
        );
        assert_eq!(
            after(&[Unknown, Unknown, Unknown], 100),
            Breaker::Open { until: 130 }
        );
    }

    #[test]
    fn risk_g7_off_never_opens() {
        let state = (0..100).fold(Breaker::CLOSED, |state, _| {
            state.record(&BreakerRule::OFF, CallOutcome::Unknown, 100)
        });
        assert_eq!(state.admit(&BreakerRule::OFF, 100).1, Admission::Call);
    }

    #[test]
    fn risk_g7_open_refuses_until_the_cool_down_is_over() {
        let open = Breaker::Open { until: 130 };
        assert_eq!(
            open.admit(&RULE, 100),
            (
                open,
                Admission::Refuse {
                    retry_after_secs: 30
                }
            )
        );
        assert_eq!(
            open.admit(&RULE, 129).1,
            Admission::Refuse {
                retry_after_secs: 1
            }
        );
        // Late outcomes of calls made before it opened change nothing.
        assert_eq!(open.record(&RULE, CallOutcome::Answered, 110), open);
        assert_eq!(open.record(&RULE, CallOutcome::Unknown, 110), open);
    }

    #[test]
    fn risk_g7_half_open_lets_a_few_probes_through_and_the_first_outcome_decides() {
        let open = Breaker::Open { until: 130 };
        let (state, first) = open.admit(&RULE, 131);
        assert_eq!(first, Admission::Probe { round: 131 });
        let (state, second) = state.admit(&RULE, 132);
        assert_eq!(second, Admission::Probe { round: 131 });
        let (state, third) = state.admit(&RULE, 132);
        assert!(matches!(third, Admission::Refuse { .. }), "{third:?}");
        assert!(state.is_open());

        assert_eq!(
            state.record(&RULE, CallOutcome::Answered, 140),
            Breaker::CLOSED
        );
        assert_eq!(
            state.record(&RULE, CallOutcome::Unknown, 140),
            Breaker::Open { until: 170 }
        );
    }

    #[test]
    fn risk_g7_a_probe_that_never_called_frees_its_slot_in_its_own_round_only() {
        let (state, probe) = Breaker::Open { until: 130 }.admit(&RULE, 131);
        let Admission::Probe { round } = probe else {
            panic!("{probe:?}");
        };
        let (state, _) = state.admit(&RULE, 131);
        let freed = state.probe_ended(round);
        assert_eq!(
            freed,
            Breaker::HalfOpen {
                round: 131,
                probing: 1
            }
        );
        assert_eq!(freed.admit(&RULE, 131).1, Admission::Probe { round: 131 });
        // A probe of an earlier spell ending later takes nothing from the current one.
        let later = Breaker::HalfOpen {
            round: 200,
            probing: 2,
        };
        assert_eq!(later.probe_ended(round), later);
        assert_eq!(Breaker::CLOSED.probe_ended(round), Breaker::CLOSED);
    }
}
