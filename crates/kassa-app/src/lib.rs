//! Kassa's use cases and the ports they run against.
//!
//! A use case takes plain values, talks to the outside world only through the traits in
//! [`ports`] (storage, payment provider, clock), and returns a result the HTTP layer maps to a
//! response. Nothing here knows about axum, sqlx or Stripe's wire format.

pub mod ports;
