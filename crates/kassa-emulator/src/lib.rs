//! The Stripe emulator (being written).
