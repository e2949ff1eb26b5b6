//! Kassa's domain core: the rules that make checkout correct, as pure functions.
//!
//! This crate does no I/O, spawns nothing, reads no clock and draws no random numbers: time and
//! ids are passed in. It knows nothing of HTTP, SQL, JSON or Stripe's wire format, so it cannot
//! fail on I/O and every rule here is testable with plain values.

pub mod attention;
pub mod breaker;
pub mod cart;
pub mod commands;
pub mod credits;
pub mod limits;
pub mod marketplace;
pub mod money;
pub mod order;
pub mod payment;
pub mod plan;
pub mod provider_keys;
pub mod refund;
pub mod reservation;
pub mod retention;
mod states;
pub mod text;

pub use states::IllegalTransition;

pub use money::{Currency, Money, MoneyError};
