//! The checkout saga (risks G3, G5, G7, G8, P1, P2, P4, P8, S1): from a cart to an order with
//! reserved stock and a way to pay, in atomic phases separated by one foreign call.
//!
//! 1. key phase: the Idempotency-Key is claimed (or replayed, or refused);
//! 2. local phase, one transaction: price on the server, compare with `expected_total`, reserve
//!    stock, write order + payment row with its deterministic provider key;
//! 3. foreign phase: create the PaymentIntent (embedded flow) or the Checkout Session (hosted
//!    flow, risks S4, S5) with that key (no transaction open);
//! 4. finish phase, one transaction: record it and store the response on the key.
//!
//! Both flows are one saga: they differ only in what the foreign phase creates.
//!
//! A definite provider refusal compensates in one transaction. An unknown outcome leaves the
//! recovery point in place: the client's retry with the same key, or the completer, resumes it,
//! and the same provider key makes the provider return the same PaymentIntent.

use hmac::digest::Digest;
use kassa_domain::Money;
use kassa_domain::cart::PricedCart;
use kassa_domain::text::fields;
use sha2::Sha256;

use crate::App;
use crate::cart::view_of;
use crate::error::{AppError, AppResult};
use crate::ports::{
    Abandoned, Actor, CaptureMethod, CreateCheckoutSession, CreatePaymentIntent, KeyClaim, KeyRef,
    OrderPlan, PendingPayment, PlaceRefusal, ProviderCheckoutSession, ProviderError,
    ProviderPaymentIntent, RecentCheckouts, RecoveryPoint, ShippingAddress, StoredResponse,
};
use crate::validate;

/// How long the completer keeps asking the provider about a checkout whose outcome is unknown
/// (every round, with the same key) before handing it to a person.
pub const UNKNOWN_OUTCOME_GIVE_UP_SECS: i64 = 3_600;
/// How long a client should wait before retrying after an unknown provider outcome.
const PROVIDER_RETRY_AFTER_SECS: i64 = 2;
/// Stripe refuses a Checkout Session that expires sooner than 30 minutes after the request
/// that creates it. A create whose outcome was unknown is retried with the same parameters
/// (the same key); ten minutes more lets those retries, by the client or the completer, still
/// pass that check. Past them Stripe refuses the create — definitely, since nothing was made
/// under the key — and the checkout is canceled and its stock released.
pub const HOSTED_EXPIRY_MIN_SECS: i64 = 40 * 60;
/// Stripe's refusal of a destination charge whose account cannot take charges.
const DESTINATION_CANNOT_TAKE_CHARGES: &str = "insufficient_capabilities_for_transfer";
/// … or later than 24 hours after it.
pub const HOSTED_EXPIRY_MAX_SECS: i64 = 24 * 3600;

/// How the customer pays for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutFlow {
    /// In the storefront, confirming the PaymentIntent with its client secret.
    Embedded,
    /// On the provider's hosted page (a Checkout Session).
    Hosted,
}

/// How many checkouts one customer e-mail, and one client address, may place within a window
/// (risk S7: card testing, a script emptying the stock). `0` turns a limit off. New checkouts
/// only: a retry of a checkout with its key is never refused by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VelocityLimits {
    pub per_email: u32,
    pub per_client_ip: u32,
    pub window_secs: i64,
}

impl VelocityLimits {
    pub const OFF: VelocityLimits = VelocityLimits {
        per_email: 0,
        per_client_ip: 0,
        window_secs: 3_600,
    };

    /// How long until one more checkout fits, or `None` if it fits now.
    fn wait_secs(&self, recent: &RecentCheckouts, now: i64) -> Option<i64> {
        [
            (self.per_email, recent.by_email),
            (self.per_client_ip, recent.by_client_ip),
        ]
        .into_iter()
        .filter(|(limit, seen)| *limit > 0 && seen.count >= i64::from(*limit))
        .map(|(_, seen)| (seen.oldest_at.unwrap_or(now) + self.window_secs - now).max(1))
        .max()
    }
}

/// Where the hosted page sends the customer back: from configuration only, never from a
/// request (risk S5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedCheckoutUrls {
    /// Carries Stripe's `{CHECKOUT_SESSION_ID}` placeholder, never a token (risk S4).
    pub success_url: String,
    pub cancel_url: String,
}

pub struct CheckoutInput {
    pub cart_id: String,
    /// Fingerprint of the API key that sent the request; keys are scoped to it.
    pub key_scope: String,
    pub idempotency_key: Option<String>,
    pub email: String,
    pub shipping: ShippingAddress,
    pub expected_total_minor: i64,
    pub flow: CheckoutFlow,
    pub actor: Actor,
}

/// The successful checkout, for the renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutCreated {
    pub order_id: String,
    pub order_status: String,
    pub total: Money,
    pub payment_id: String,
    pub payment_intent_id: String,
    pub client_secret: Option<String>,
    pub payment_status: String,
    pub order_token: String,
}

/// The successful hosted checkout, for the renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCreated {
    pub order_id: String,
    pub order_status: String,
    pub total: Money,
    pub session_id: String,
    pub url: String,
    pub expires_at: i64,
    pub order_token: String,
}

/// Turns outcomes into the stored HTTP answer. Implemented at the HTTP edge, so this crate
/// knows no JSON; the stored text is what a retry with the same key gets back.
pub trait CheckoutRenderer: Send + Sync {
    fn created(&self, created: &CheckoutCreated) -> StoredResponse;
    fn session_created(&self, created: &SessionCreated) -> StoredResponse;
    fn refused(&self, error: &AppError) -> StoredResponse;
}

/// What the HTTP layer sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutReply {
    pub response: StoredResponse,
    pub replayed: bool,
}

impl App {
    /// What the storefront hears when the provider definitely refused the payment: the seller's
    /// unavailability when the refusal was the destination account's (it was disabled after Kassa
    /// last heard, risk P10), else the provider's refusal.
    async fn refusal_of(
        &self,
        pending: &PendingPayment,
        code: &str,
        reason: String,
    ) -> AppResult<AppError> {
        if let Some(destination) = &pending.destination
            && code == DESTINATION_CANNOT_TAKE_CHARGES
            && let Some(seller_id) = self
                .store
                .seller_for_account(&destination.account_id)
                .await?
        {
            return Ok(AppError::SellerUnavailable { seller_id });
        }
        Ok(AppError::ProviderRefused { message: reason })
    }

    pub async fn checkout(&self, input: CheckoutInput) -> AppResult<CheckoutReply> {
        let reply = self.checkout_once(input).await;
        crate::metrics::count_checkout(match &reply {
            Ok(reply) if reply.replayed => "replayed",
            Ok(reply) if reply.response.status == 201 => "created",
            Ok(_) => "refused",
            Err(AppError::ProviderUnavailable { .. } | AppError::Store(_)) => "unavailable",
            Err(AppError::RateLimited { .. }) => "rate_limited",
            Err(_) => "invalid",
        });
        reply
    }

    async fn checkout_once(&self, input: CheckoutInput) -> AppResult<CheckoutReply> {
        let key = checked_key(&input)?;
        let input = normalized_customer(input)?;
        if input.flow == CheckoutFlow::Hosted && self.settings.hosted_checkout.is_none() {
            return Err(AppError::InvalidState {
                message: "hosted checkout is not configured: set KASSA_CHECKOUT_SUCCESS_URL and \
                          KASSA_CHECKOUT_CANCEL_URL"
                    .into(),
            });
        }
        // The path is part of the key's request: one key never serves both flows.
        let path = match input.flow {
            CheckoutFlow::Embedded => format!("/v1/carts/{}/checkout", input.cart_id),
            CheckoutFlow::Hosted => format!("/v1/carts/{}/checkout_session", input.cart_id),
        };
        let now = self.clock.now_secs();
        let lock_secs = self.settings.checkout_lock_secs;
        let claim = self
            .store
            .claim_key(&key, &path, &request_hash(&input), lock_secs, now)
            .await?;
        let response = match claim {
            KeyClaim::Replay(response) => {
                return Ok(CheckoutReply {
                    response,
                    replayed: true,
                });
            }
            KeyClaim::Mismatch => return Err(AppError::IdempotencyKeyReused),
            KeyClaim::InProgress { retry_after_secs } => {
                return Err(AppError::RequestInProgress { retry_after_secs });
            }
            KeyClaim::Claimed {
                recovery_point: RecoveryPoint::OrderCreated,
                order_id: Some(order_id),
            } => {
                self.drive_payment(Some(&key), &order_id, &input.actor)
                    .await?
            }
            KeyClaim::Claimed { .. } => {
                // A provider that stopped answering refuses new checkouts here, at once and
                // before anything is reserved, instead of holding each for the adapter's whole
                // retry budget (risk G7). A retry of a placed checkout (the arm above) is not
                // asked: its stock is already held and finishing it is started work.
                let _pass = match self.breaker.admit(now) {
                    Ok(pass) => pass,
                    Err(refusal) => {
                        self.store.release_key(&key).await?;
                        return Err(refusal);
                    }
                };
                if let Some(retry_after_secs) = self.velocity_wait(&input, now).await? {
                    // Nothing was placed: the key is free for the same request later.
                    self.store.release_key(&key).await?;
                    return Err(AppError::RateLimited { retry_after_secs });
                }
                self.local_phase(&key, &input).await?
            }
        };
        Ok(CheckoutReply {
            response,
            replayed: false,
        })
    }

    /// Resumes checkouts whose client went away at `OrderCreated`; returns how many it drove.
    pub async fn complete_stalled_checkouts(&self, batch_max: i64) -> AppResult<usize> {
        let now = self.clock.now_secs();
        let stalled = self
            .store
            .stalled_checkouts(self.settings.checkout_lock_secs, batch_max, now)
            .await?;
        let actor = Actor {
            kind: "completer".into(),
            request_id: None,
            client_ip: None,
        };
        let mut driven = 0;
        for item in stalled {
            if !self
                .store
                .claim_stalled_key(&item.key, self.settings.checkout_lock_secs, now)
                .await?
            {
                continue;
            }
            if now - item.started_at >= UNKNOWN_OUTCOME_GIVE_UP_SECS {
                // Never a guess: a person checks the provider for this order's intent.
                let reason = "unknown_outcome: the payment provider never answered whether this \
                              checkout's PaymentIntent exists; resolve with retry to ask again \
                              with the same key";
                self.store
                    .flag_order(&item.order_id, reason, &actor, now)
                    .await?;
                // Free for the person's `retry`, which drives the checkout with this key.
                self.store.release_key(&item.key).await?;
                continue;
            }
            match self
                .drive_payment(Some(&item.key), &item.order_id, &actor)
                .await
            {
                Ok(_) => driven += 1,
                Err(AppError::ProviderUnavailable { .. }) => {}
                // One checkout failing never stops the others; it is tried again next round.
                Err(error) => {
                    tracing::error!(order_id = %item.order_id, %error, "completing a checkout failed");
                }
            }
        }
        Ok(driven)
    }

    /// How long this customer (by e-mail and by address) must wait before another checkout, if
    /// the velocity limits say so.
    async fn velocity_wait(&self, input: &CheckoutInput, now: i64) -> AppResult<Option<i64>> {
        let limits = self.settings.checkout_velocity;
        if limits.per_email == 0 && limits.per_client_ip == 0 {
            return Ok(None);
        }
        let client_ip = input.actor.client_ip.as_deref();
        let recent = self
            .store
            .recent_checkouts(&input.email, client_ip, now - limits.window_secs)
            .await?;
        Ok(limits.wait_secs(&recent, now))
    }

    async fn local_phase(&self, key: &KeyRef, input: &CheckoutInput) -> AppResult<StoredResponse> {
        let now = self.clock.now_secs();
        let order_id = self.ids.new_id("ord");
        let payment_id = self.ids.new_id("pay");
        let ttl = self.settings.reservation_ttl_secs;
        // The hosted page is open as long as the stock is held, within Stripe's bounds.
        let hosted_expires_at = (input.flow == CheckoutFlow::Hosted)
            .then(|| now + ttl.clamp(HOSTED_EXPIRY_MIN_SECS, HOSTED_EXPIRY_MAX_SECS));
        // An authorized order keeps its stock until its capture, after the window.
        let reservation_expires_at = match self.settings.capture_method {
            CaptureMethod::Automatic => now + ttl,
            CaptureMethod::Manual => now + ttl.max(self.settings.modification_window_secs + ttl),
        }
        .max(hosted_expires_at.unwrap_or(0));
        let plan = OrderPlan {
            provider_idempotency_key: match input.flow {
                CheckoutFlow::Embedded => provider_key_for_payment(&payment_id),
                CheckoutFlow::Hosted => provider_key_for_session(&payment_id),
            },
            order_id,
            payment_id,
            capture_method: self.settings.capture_method,
            email: input.email.clone(),
            shipping: input.shipping.clone(),
            reservation_expires_at,
            capture_due_at: (self.settings.capture_method == CaptureMethod::Manual)
                .then_some(now + self.settings.modification_window_secs),
            hosted_expires_at,
            client_ip: input.actor.client_ip.clone(),
            platform_fee_bps: self.settings.platform_fee_bps,
        };
        let expected = input.expected_total_minor;
        let price = move |cart: &crate::ports::Cart| -> Result<PricedCart, PlaceRefusal> {
            price_for_checkout(cart, expected)
        };
        let placed = self
            .store
            .place_order(key, &input.cart_id, &plan, &price, &input.actor, now)
            .await?;
        match placed {
            Ok(pending) => self.foreign_phase(Some(key), pending, &input.actor).await,
            Err(refusal) => {
                let error = refusal_error(refusal);
                let response = self.renderer.refused(&error);
                self.store.finish_key(key, &response, now).await?;
                Ok(response)
            }
        }
    }

    /// Resumes an order at `OrderCreated`: create the intent if it is still missing, else
    /// rebuild the answer from what was recorded.
    pub(crate) async fn drive_payment(
        &self,
        key: Option<&KeyRef>,
        order_id: &str,
        actor: &Actor,
    ) -> AppResult<StoredResponse> {
        if let Some(pending) = self.store.pending_payment(order_id).await? {
            return self.foreign_phase(key, pending, actor).await;
        }
        let order = self
            .store
            .order(order_id)
            .await?
            .ok_or(AppError::NotFound { what: "order" })?;
        let payment = order
            .payment
            .as_ref()
            .ok_or(AppError::NotFound { what: "payment" })?;
        let order_token = self.order_tokens.mint(&order.id, order.created_at);
        let hosted_session = payment.hosted.as_ref().and_then(|hosted| {
            Some((
                hosted.session_id.clone()?,
                hosted.url.clone()?,
                hosted.expires_at,
            ))
        });
        let response = match (&payment.payment_intent_id, hosted_session) {
            (_, Some((session_id, url, expires_at))) => {
                self.renderer.session_created(&SessionCreated {
                    order_id: order.id.clone(),
                    order_status: order.status.as_str().to_owned(),
                    total: order.total,
                    session_id,
                    url,
                    expires_at,
                    order_token,
                })
            }
            // A hosted payment whose session was never recorded was refused (below).
            (Some(intent_id), None) if payment.hosted.is_none() => {
                self.renderer.created(&CheckoutCreated {
                    order_id: order.id.clone(),
                    order_status: order.status.as_str().to_owned(),
                    total: order.total,
                    payment_id: payment.id.clone(),
                    payment_intent_id: intent_id.clone(),
                    client_secret: payment.client_secret.clone(),
                    payment_status: payment.status.as_str().to_owned(),
                    order_token,
                })
            }
            // The page's session ended (an early `expired` event) before it was recorded.
            _ if payment.hosted.is_some() => self.renderer.refused(&AppError::InvalidState {
                message: format!("the order is {} and has no payment page", order.status),
            }),
            _ => self.renderer.refused(&AppError::ProviderRefused {
                message: payment.last_error.clone().unwrap_or_default(),
            }),
        };
        if let Some(key) = key {
            self.store
                .finish_key(key, &response, self.clock.now_secs())
                .await?;
        }
        Ok(response)
    }

    async fn foreign_phase(
        &self,
        key: Option<&KeyRef>,
        pending: PendingPayment,
        actor: &Actor,
    ) -> AppResult<StoredResponse> {
        let metadata = vec![
            ("kassa_order_id".into(), pending.order_id.clone()),
            ("kassa_payment_id".into(), pending.payment_id.clone()),
        ];
        // No transaction is open here, and the adapter bounds the call's time (risk G7).
        let outcome = match &pending.hosted {
            None => self
                .provider
                .create_payment_intent(CreatePaymentIntent {
                    amount_minor: pending.amount.amount_minor(),
                    currency: pending.amount.currency(),
                    capture_method: pending.capture_method,
                    destination: pending.destination.clone(),
                    transfer_group: pending.transfer_group.clone(),
                    metadata,
                    idempotency_key: pending.provider_idempotency_key.clone(),
                })
                .await
                .map(Created::Intent),
            Some(hosted) => {
                let urls = self.settings.hosted_checkout.clone().ok_or_else(|| {
                    AppError::InvalidState {
                        message: "hosted checkout is not configured".into(),
                    }
                })?;
                self.provider
                    .create_checkout_session(CreateCheckoutSession {
                        lines: hosted.lines.clone(),
                        currency: pending.amount.currency(),
                        capture_method: pending.capture_method,
                        success_url: urls.success_url,
                        cancel_url: urls.cancel_url,
                        client_reference_id: pending.order_id.clone(),
                        customer_email: hosted.email.clone(),
                        metadata,
                        transfer_group: pending.transfer_group.clone(),
                        expires_at_secs: hosted.expires_at,
                        idempotency_key: pending.provider_idempotency_key.clone(),
                    })
                    .await
                    .map(Created::Session)
            }
        };
        let now = self.clock.now_secs();
        self.breaker.record(&outcome, now);
        match outcome {
            Ok(Created::Intent(intent)) => {
                self.finish_phase(key, &pending, &intent, actor, now).await
            }
            Ok(Created::Session(session)) => {
                self.finish_session_phase(key, &pending, &session, actor, now)
                    .await
            }
            Err(ProviderError::Definite { code, message }) => {
                let reason = format!("{code}: {message}");
                let refusal = self.refusal_of(&pending, &code, reason.clone()).await?;
                let response = self.renderer.refused(&refusal);
                let abandoned = Abandoned {
                    order_id: pending.order_id.clone(),
                    payment_id: pending.payment_id.clone(),
                    reason,
                };
                self.store
                    .abandon_checkout(key, &abandoned, Some(&response), actor, now)
                    .await?;
                Ok(response)
            }
            Err(ProviderError::Unknown { reason }) => {
                tracing::warn!(order_id = %pending.order_id, %reason, "provider outcome unknown; left for retry");
                if let Some(key) = key {
                    self.store.release_key(key).await?;
                }
                Err(AppError::ProviderUnavailable {
                    retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                })
            }
        }
    }

    async fn finish_phase(
        &self,
        key: Option<&KeyRef>,
        pending: &PendingPayment,
        intent: &ProviderPaymentIntent,
        actor: &Actor,
        now: i64,
    ) -> AppResult<StoredResponse> {
        same_amount(pending, &intent.id, intent.amount_minor, &intent.currency)?;
        let created = CheckoutCreated {
            order_id: pending.order_id.clone(),
            order_status: "pending_payment".into(),
            total: pending.amount,
            payment_id: pending.payment_id.clone(),
            payment_intent_id: intent.id.clone(),
            client_secret: intent.client_secret.clone(),
            payment_status: "requires_payment_method".into(),
            order_token: self
                .order_tokens
                .mint(&pending.order_id, pending.order_created_at),
        };
        let response = self.renderer.created(&created);
        self.store
            .record_payment_intent(
                key,
                &pending.payment_id,
                intent,
                Some(&response),
                actor,
                now,
            )
            .await?;
        Ok(response)
    }
}

impl App {
    async fn finish_session_phase(
        &self,
        key: Option<&KeyRef>,
        pending: &PendingPayment,
        session: &ProviderCheckoutSession,
        actor: &Actor,
        now: i64,
    ) -> AppResult<StoredResponse> {
        same_amount(
            pending,
            &session.id,
            session.amount_total_minor,
            &session.currency,
        )?;
        let url = session.url.clone().ok_or_else(|| AppError::InvalidState {
            message: "the payment provider returned no page to send the customer to".into(),
        })?;
        let created = SessionCreated {
            order_id: pending.order_id.clone(),
            order_status: "pending_payment".into(),
            total: pending.amount,
            session_id: session.id.clone(),
            url,
            expires_at: session.expires_at_secs,
            order_token: self
                .order_tokens
                .mint(&pending.order_id, pending.order_created_at),
        };
        let response = self.renderer.session_created(&created);
        self.store
            .record_checkout_session(
                key,
                &pending.payment_id,
                session,
                Some(&response),
                actor,
                now,
            )
            .await?;
        Ok(response)
    }
}

/// The amount asked at the provider is the frozen order total, never anything else (risks G8,
/// W6).
fn same_amount(
    pending: &PendingPayment,
    provider_id: &str,
    amount_minor: i64,
    currency: &str,
) -> AppResult<()> {
    if amount_minor == pending.amount.amount_minor() && currency == pending.amount.currency().code()
    {
        return Ok(());
    }
    tracing::error!(order_id = %pending.order_id, %provider_id, "the provider's amount differs from the order");
    Err(AppError::InvalidState {
        message: "the payment provider reported a different amount".into(),
    })
}

/// The provider idempotency key of a payment attempt: derived from Kassa's own id, so every
/// retry of the create call, by anyone, names the same PaymentIntent.
pub fn provider_key_for_payment(payment_id: &str) -> String {
    kassa_domain::provider_keys::create_payment_intent(payment_id)
}

/// The same for a hosted payment's Checkout Session.
pub fn provider_key_for_session(payment_id: &str) -> String {
    kassa_domain::provider_keys::create_checkout_session(payment_id)
}

/// What the foreign phase created.
enum Created {
    Intent(ProviderPaymentIntent),
    Session(ProviderCheckoutSession),
}

fn checked_key(input: &CheckoutInput) -> AppResult<KeyRef> {
    Ok(KeyRef {
        scope: input.key_scope.clone(),
        key: validate::idempotency_key(input.idempotency_key.as_deref())?,
    })
}

/// The input with the customer's e-mail and address in their stored spelling, or the first
/// field that does not fit its shape (risk S6). Only normalised values reach the database.
fn normalized_customer(mut input: CheckoutInput) -> AppResult<CheckoutInput> {
    input.email = validate::shaped("email", fields::EMAIL, &input.email)?;
    let address = &mut input.shipping;
    for (param, shape, value) in [
        (
            "shipping_address.name",
            fields::PERSON_NAME,
            &mut address.name,
        ),
        (
            "shipping_address.line1",
            fields::ADDRESS_LINE,
            &mut address.line1,
        ),
        ("shipping_address.city", fields::CITY, &mut address.city),
        (
            "shipping_address.postal_code",
            fields::POSTAL_CODE,
            &mut address.postal_code,
        ),
        (
            "shipping_address.country",
            fields::COUNTRY,
            &mut address.country,
        ),
    ] {
        *value = validate::shaped(param, shape, value)?;
    }
    if input.expected_total_minor < 0 {
        return Err(AppError::invalid(
            "expected_total",
            "must be zero or more minor units",
        ));
    }
    Ok(input)
}

/// Same key + same request ⇒ same hash; any change of cart, customer or expected total differs.
fn request_hash(input: &CheckoutInput) -> String {
    let a = &input.shipping;
    let fields = [
        input.cart_id.as_str(),
        &input.email,
        &a.name,
        &a.line1,
        &a.city,
        &a.postal_code,
        &a.country,
        &input.expected_total_minor.to_string(),
    ];
    let mut hasher = Sha256::new();
    for field in fields {
        hasher.update(field.len().to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Runs inside the local transaction on the cart as locked there.
fn price_for_checkout(
    cart: &crate::ports::Cart,
    expected_total_minor: i64,
) -> Result<PricedCart, PlaceRefusal> {
    if cart.lines.is_empty() {
        return Err(PlaceRefusal::Pricing("the cart is empty".into()));
    }
    if let Some(line) = cart.lines.iter().find(|line| !line.active) {
        return Err(PlaceRefusal::Pricing(format!(
            "{} is no longer for sale",
            line.sku
        )));
    }
    let view = view_of(cart).map_err(|error| PlaceRefusal::Pricing(error.to_string()))?;
    if view.priced.total.amount_minor() != expected_total_minor {
        return Err(PlaceRefusal::PriceChanged {
            total: view.priced.total,
        });
    }
    // Stripe would refuse the PaymentIntent after the stock was held: refuse it here instead.
    let total = view.priced.total;
    if total.amount_minor() < total.currency().minimum_charge_minor() {
        return Err(PlaceRefusal::AmountTooSmall { total });
    }
    Ok(view.priced)
}

fn refusal_error(refusal: PlaceRefusal) -> AppError {
    match refusal {
        PlaceRefusal::CartNotFound => AppError::NotFound { what: "cart" },
        PlaceRefusal::CheckedOut { order_id } => AppError::CartAlreadyCheckedOut { order_id },
        PlaceRefusal::Pricing(message) => AppError::InvalidState { message },
        PlaceRefusal::PriceChanged { total } => AppError::PriceChanged {
            total: total.amount_minor(),
        },
        PlaceRefusal::InsufficientStock { skus } => AppError::InsufficientStock { skus },
        PlaceRefusal::SellerUnavailable { seller_id } => AppError::SellerUnavailable { seller_id },
        PlaceRefusal::AmountTooSmall { total } => AppError::AmountTooSmall {
            total,
            minimum: Money::new(total.currency().minimum_charge_minor(), total.currency()),
        },
    }
}
