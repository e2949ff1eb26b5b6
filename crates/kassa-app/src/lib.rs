//! Kassa's use cases and the ports they run against.
//!
//! A use case takes plain values, talks to the outside world only through the traits in
//! [`ports`] (storage, payment provider, clock), and returns a result the HTTP layer maps to a
//! response. Nothing here knows about axum, sqlx or Stripe's wire format.

use std::sync::Arc;

pub mod attention;
mod breaker;
pub mod cart;
pub mod catalog;
pub mod check;
pub mod checkout;
pub mod error;
mod hosted;
pub mod ids;
pub mod janitor;
pub mod metrics;
pub mod notifications;
pub mod order_commands;
pub mod order_token;
pub mod orders;
pub mod ports;
pub mod reconcile;
pub mod refunds;
pub mod sellers;
pub mod subscriptions;
pub mod transfers;
pub mod validate;
pub mod webhooks;

pub use error::{AppError, AppResult};

use crate::checkout::CheckoutRenderer;
use crate::order_token::OrderTokens;
use crate::ports::CaptureMethod;

/// Policy knobs, fixed at startup.
#[derive(Debug, Clone)]
pub struct Settings {
    pub capture_method: CaptureMethod,
    /// How long checkout reservations are held before the janitor may release them.
    pub reservation_ttl_secs: i64,
    /// How long a running checkout holds its idempotency key; longer than the provider call's
    /// worst case, so a live request is never resumed twice, short enough that a crashed one is
    /// resumed soon.
    pub checkout_lock_secs: i64,
    /// How long after checkout the customer may edit or cancel; manual capture runs when it
    /// closes (`KASSA_MODIFICATION_WINDOW_SECS`).
    pub modification_window_secs: i64,
    /// Inactivity after which an open cart expires (`KASSA_CART_TTL_SECS`).
    pub cart_ttl_secs: i64,
    /// How long a capture, cancel or expiry may stay pending before another worker takes it
    /// over (`KASSA_OPERATION_RESUME_SECS`).
    pub operation_resume_secs: i64,
    /// Where the hosted payment page sends the customer back; `None`: no hosted checkout.
    pub hosted_checkout: Option<checkout::HostedCheckoutUrls>,
    /// How many checkouts a customer e-mail and a client address may place per window.
    pub checkout_velocity: checkout::VelocityLimits,
    /// The platform's fee on a seller's sale, in basis points (`KASSA_PLATFORM_FEE_BPS`).
    pub platform_fee_bps: i64,
    /// When new checkouts stop calling a provider that does not answer, and for how long
    /// (`KASSA_BREAKER_*`, risk G7); off unless configured.
    pub stripe_breaker: kassa_domain::breaker::BreakerRule,
    /// How long the janitor keeps idempotency keys, webhook events and notifications
    /// (`KASSA_RETENTION_*_DAYS`, risk D2).
    pub retention: kassa_domain::retention::Retention,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            capture_method: CaptureMethod::Automatic,
            reservation_ttl_secs: 30 * 60,
            checkout_lock_secs: 60,
            modification_window_secs: 3_600,
            cart_ttl_secs: 86_400,
            operation_resume_secs: order_commands::OPERATION_RESUME_AFTER_SECS,
            hosted_checkout: None,
            checkout_velocity: checkout::VelocityLimits::OFF,
            platform_fee_bps: 0,
            stripe_breaker: kassa_domain::breaker::BreakerRule::OFF,
            retention: kassa_domain::retention::Retention::DEFAULT,
        }
    }
}

/// Everything an [`App`] is built from.
pub struct AppParts {
    pub store: Arc<dyn ports::Store>,
    pub provider: Arc<dyn ports::PaymentProvider>,
    pub clock: Arc<dyn ports::Clock>,
    pub ids: Arc<dyn ports::IdSource>,
    pub renderer: Arc<dyn CheckoutRenderer>,
    pub verifier: Arc<dyn ports::WebhookVerifier>,
    pub order_tokens: OrderTokens,
    pub settings: Settings,
}

/// The application: every use case is a method on it.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn ports::Store>,
    provider: Arc<dyn ports::PaymentProvider>,
    clock: Arc<dyn ports::Clock>,
    ids: Arc<dyn ports::IdSource>,
    renderer: Arc<dyn CheckoutRenderer>,
    verifier: Arc<dyn ports::WebhookVerifier>,
    order_tokens: OrderTokens,
    settings: Settings,
    /// Shared by every clone of this `App`: one breaker per process.
    breaker: Arc<breaker::ProviderBreaker>,
}

impl App {
    pub fn new(parts: AppParts) -> App {
        App {
            store: parts.store,
            provider: parts.provider,
            clock: parts.clock,
            ids: parts.ids,
            renderer: parts.renderer,
            verifier: parts.verifier,
            order_tokens: parts.order_tokens,
            breaker: Arc::new(breaker::ProviderBreaker::new(parts.settings.stripe_breaker)),
            settings: parts.settings,
        }
    }

    /// Whether the breaker in front of the payment provider holds new checkouts back now.
    pub fn stripe_breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// Readiness: the database answers and its schema is current.
    pub async fn ready(&self) -> bool {
        matches!(self.store.ready().await, Ok(true))
    }
}
