//! Kassa's Stripe adapter: the `PaymentProvider` and `WebhookVerifier` ports over Stripe's HTTP
//! API and webhook signatures.
//!
//! What it guarantees: every mutating call carries the caller's idempotency key; every call has a
//! connect timeout and a total timeout (risk G7); retries are bounded, jittered, reuse the key and
//! happen only where Stripe says a retry is safe; every outcome is succeeded, definitely failed,
//! or unknown — never an unknown dressed as a failure. It knows nothing of Kassa's database.

mod client;
mod parse;
mod signature;
mod webhook;

pub use client::{STRIPE_API_VERSION, StripeClient, StripeConfig};
pub use signature::{SignatureError, verify_signature};
pub use webhook::{StripeWebhookVerifier, WEBHOOK_TOLERANCE_SECS};
