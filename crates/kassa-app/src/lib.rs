//! Kassa's use cases and the ports they run against.
//!
//! A use case takes plain values, talks to the outside world only through the traits in
//! [`ports`] (storage, payment provider, clock), and returns a result the HTTP layer maps to a
//! response. Nothing here knows about axum, sqlx or Stripe's wire format.

use std::sync::Arc;

pub mod cart;
pub mod catalog;
pub mod error;
pub mod ids;
pub mod ports;
pub mod validate;

pub use error::{AppError, AppResult};

/// The application: every use case is a method on it.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn ports::Store>,
    clock: Arc<dyn ports::Clock>,
}

impl App {
    pub fn new(store: Arc<dyn ports::Store>, clock: Arc<dyn ports::Clock>) -> App {
        App { store, clock }
    }

    /// Readiness: the database answers and its schema is current.
    pub async fn ready(&self) -> bool {
        matches!(self.store.ready().await, Ok(true))
    }
}
