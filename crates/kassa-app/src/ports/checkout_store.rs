//! Storage for the checkout saga: idempotency keys with recovery points, and the local
//! transactions between the foreign calls (Stripe's "atomic phases").
//!
//! Phase methods each run in one transaction and move the key's recovery point with their
//! effects, so a crash between phases leaves a key that a retry or the completer resumes.

use async_trait::async_trait;
use kassa_domain::Money;
use kassa_domain::cart::PricedCart;

use super::provider::{CaptureMethod, ProviderPaymentIntent};
use super::store::{Cart, StoreResult};

/// A client idempotency key, scoped to the API key that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub scope: String,
    pub key: String,
}

/// How far a checkout got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPoint {
    /// Key recorded; nothing else written.
    Started,
    /// Order, reservations and payment row committed; the PaymentIntent may or may not exist.
    OrderCreated,
    /// Response stored; nothing left to do.
    Finished,
}

impl RecoveryPoint {
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPoint::Started => "started",
            RecoveryPoint::OrderCreated => "order_created",
            RecoveryPoint::Finished => "finished",
        }
    }

    pub fn parse(text: &str) -> Option<RecoveryPoint> {
        match text {
            "started" => Some(RecoveryPoint::Started),
            "order_created" => Some(RecoveryPoint::OrderCreated),
            "finished" => Some(RecoveryPoint::Finished),
            _ => None,
        }
    }
}

/// A stored HTTP answer, replayed byte for byte for the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// The outcome of presenting an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// This request now holds the key's lock and must carry on from `recovery_point`.
    Claimed {
        recovery_point: RecoveryPoint,
        order_id: Option<String>,
    },
    /// The key finished earlier: answer with this.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// Another request holds the key.
    InProgress { retry_after_secs: i64 },
}

/// Who caused a change, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `storefront`, `operator`, `webhook`, `completer`, …
    pub kind: String,
    /// The request id (`X-Request-Id`), or the provider event id for a webhook.
    pub request_id: Option<String>,
    /// The client's address, for changes made over HTTP.
    pub client_ip: Option<String>,
}

/// Everything the local phase writes, decided by the app before the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlan {
    pub order_id: String,
    pub payment_id: String,
    pub provider_idempotency_key: String,
    pub capture_method: CaptureMethod,
    pub email: String,
    pub shipping: ShippingAddress,
    pub reservation_expires_at: i64,
    /// Manual capture: when the modification window closes and the capture falls due.
    pub capture_due_at: Option<i64>,
    /// Paid on the provider's hosted page (a Checkout Session that expires then), not in the
    /// storefront with a client secret.
    pub hosted_expires_at: Option<i64>,
    /// Where the checkout came from, counted by the velocity limits.
    pub client_ip: Option<String>,
    /// The platform's fee on a seller's order, in basis points.
    pub platform_fee_bps: i64,
}

/// Checkouts of one customer e-mail and one client address since a moment (risk S7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentCheckouts {
    pub by_email: WindowCount,
    pub by_client_ip: WindowCount,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCount {
    pub count: i64,
    /// When the oldest of them was placed.
    pub oldest_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// Why the local phase wrote nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceRefusal {
    CartNotFound,
    CheckedOut {
        order_id: String,
    },
    /// The pricing check (run inside the transaction) refused; the app's own reason.
    Pricing(String),
    PriceChanged {
        total: Money,
    },
    InsufficientStock {
        skus: Vec<String>,
    },
    /// The total is below Stripe's minimum charge in its currency: refused before anything is
    /// reserved.
    AmountTooSmall {
        total: Money,
    },
    /// A line's seller cannot take charges (risk P10): refused before anything is reserved.
    SellerUnavailable {
        seller_id: String,
    },
}

/// The payment attempt the foreign phase must create at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPayment {
    pub order_id: String,
    pub payment_id: String,
    pub amount: Money,
    pub capture_method: CaptureMethod,
    pub provider_idempotency_key: String,
    pub order_created_at: i64,
    /// A single seller's order: the destination charge decided when it was placed.
    pub destination: Option<super::Destination>,
    /// Any other order with sellers' products: the charge's transfer group (the order's id);
    /// each seller is paid by a transfer after capture.
    pub transfer_group: Option<String>,
    /// What the hosted page is created from; `None` for the embedded flow.
    pub hosted: Option<HostedCheckout>,
}

/// A hosted payment page to create: the order's frozen lines, never the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedCheckout {
    pub lines: Vec<super::SessionLine>,
    pub email: String,
    pub expires_at: i64,
}

/// A checkout the provider definitely refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    pub order_id: String,
    pub payment_id: String,
    /// The provider's code and message, kept on the payment row.
    pub reason: String,
}

/// A checkout left at `OrderCreated` whose lock has lapsed: the completer's work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledCheckout {
    pub key: KeyRef,
    pub order_id: String,
    /// When the checkout began (its key was first claimed).
    pub started_at: i64,
}

/// Prices the cart read inside the local transaction. Pure; supplied by the app.
pub type PriceCheck<'a> = &'a (dyn Fn(&Cart) -> Result<PricedCart, PlaceRefusal> + Send + Sync);

#[async_trait]
pub trait CheckoutStore: Send + Sync {
    /// Records the key (or finds it) and takes its lock until `now + lock_secs`.
    async fn claim_key(
        &self,
        key: &KeyRef,
        request_path: &str,
        request_hash: &str,
        lock_secs: i64,
        now: i64,
    ) -> StoreResult<KeyClaim>;

    /// Takes a stalled key's lock for the completer; false if someone else holds it.
    async fn claim_stalled_key(&self, key: &KeyRef, lock_secs: i64, now: i64) -> StoreResult<bool>;

    /// Drops the lock without finishing (unknown provider outcome): a retry may resume at once.
    async fn release_key(&self, key: &KeyRef) -> StoreResult<()>;

    /// Stores the final answer and unlocks the key.
    async fn finish_key(
        &self,
        key: &KeyRef,
        response: &StoredResponse,
        now: i64,
    ) -> StoreResult<()>;

    /// The local phase: lock the cart, price it with `price`, reserve stock, write order, lines,
    /// reservations, payment row and audit records, move the key to `OrderCreated`.
    async fn place_order(
        &self,
        key: &KeyRef,
        cart_id: &str,
        plan: &OrderPlan,
        price: PriceCheck<'_>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<Result<PendingPayment, PlaceRefusal>>;

    /// Orders placed since `since` by `email`, and from `client_ip` when known.
    async fn recent_checkouts(
        &self,
        email: &str,
        client_ip: Option<&str>,
        since: i64,
    ) -> StoreResult<RecentCheckouts>;

    /// The payment attempt of an order that still needs its PaymentIntent created.
    async fn pending_payment(&self, order_id: &str) -> StoreResult<Option<PendingPayment>>;

    /// The finish phase: record the PaymentIntent on the payment row and finish the key with
    /// `response`, in one transaction.
    async fn record_payment_intent(
        &self,
        key: Option<&KeyRef>,
        payment_id: &str,
        intent: &ProviderPaymentIntent,
        response: Option<&StoredResponse>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()>;

    /// The finish phase of a hosted checkout: record the Checkout Session on the payment row and
    /// finish the key with `response`, in one transaction.
    async fn record_checkout_session(
        &self,
        key: Option<&KeyRef>,
        payment_id: &str,
        session: &super::ProviderCheckoutSession,
        response: Option<&StoredResponse>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()>;

    /// Compensation after a *definite* provider refusal: payment failed, order canceled,
    /// reservations released, key finished with `response` — one transaction.
    async fn abandon_checkout(
        &self,
        key: Option<&KeyRef>,
        abandoned: &Abandoned,
        response: Option<&StoredResponse>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()>;

    /// Keys stuck at `OrderCreated` whose lock lapsed before `now - idle_secs`, oldest first.
    async fn stalled_checkouts(
        &self,
        idle_secs: i64,
        limit: i64,
        now: i64,
    ) -> StoreResult<Vec<StalledCheckout>>;
}
