//! Kassa's Stripe adapter (being written).
