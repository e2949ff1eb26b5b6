//! One module per resource; each exports a `router()`.

pub mod admin;
pub mod carts;
pub mod catalog;
pub mod checkout;
pub mod demo;
pub mod docs;
pub mod health;
pub mod orders;
pub mod refunds;
pub mod sandbox;
pub mod sellers;
pub mod subscriptions;
pub mod webhooks;
