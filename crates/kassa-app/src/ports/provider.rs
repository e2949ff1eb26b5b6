//! The payment provider port: the dozen things Kassa asks of Stripe, and how each can end.
//!
//! Every mutating call carries an idempotency key the *caller* derives from Kassa's own ids
//! (never random, never time-based), so any retry of it is safe. Every outcome is one of three:
//! the call succeeded, it definitely failed (nothing happened at the provider), or the outcome is
//! unknown (timeout, 5xx after retries, lost response). An unknown outcome is never a failure:
//! callers must not compensate on it, only retry with the same key or re-fetch.

use async_trait::async_trait;
use kassa_domain::Currency;
use kassa_domain::credits::{PaidInvoice, PeriodGrant, PlanPrice, period_grant};
use kassa_domain::payment::PaymentStatus;
use kassa_domain::refund::RefundStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMethod {
    Automatic,
    Manual,
}

impl CaptureMethod {
    /// Stripe's name, also used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<CaptureMethod> {
        match text {
            "automatic" => Some(CaptureMethod::Automatic),
            "manual" => Some(CaptureMethod::Manual),
            _ => None,
        }
    }
}

/// A destination charge (Connect): the money goes on to a seller's connected account, less the
/// platform's fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub account_id: String,
    pub application_fee_minor: i64,
}

/// Create a PaymentIntent for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePaymentIntent {
    pub amount_minor: i64,
    pub currency: Currency,
    pub capture_method: CaptureMethod,
    /// A single seller's order: `transfer_data[destination]` and `application_fee_amount`.
    pub destination: Option<Destination>,
    /// Several sellers' order: the charge's `transfer_group` (the order's id), which the
    /// transfers to each seller after capture carry too.
    pub transfer_group: Option<String>,
    /// Sent as Stripe `metadata[...]`; Kassa puts its order and payment ids here.
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: String,
}

/// The provider's view of a PaymentIntent, reduced to what Kassa uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPaymentIntent {
    pub id: String,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub amount_capturable_minor: i64,
    pub amount_received_minor: i64,
    /// Lowercase ISO code as the provider reports it (checked against the order, risk W6).
    pub currency: String,
    pub client_secret: Option<String>,
    pub latest_charge: Option<String>,
    /// Decline code or message of the last failed attempt, if any.
    pub last_error: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// A destination charge's seller account (`transfer_data[destination]`) and the platform's
    /// fee (`application_fee_amount`).
    pub destination: Option<Destination>,
}

/// One line of a hosted checkout page, priced by Kassa (never by the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLine {
    pub name: String,
    pub unit_amount_minor: i64,
    pub quantity: i64,
}

/// Create a Checkout Session (Stripe's hosted payment page) for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCheckoutSession {
    pub lines: Vec<SessionLine>,
    pub currency: Currency,
    pub capture_method: CaptureMethod,
    /// From configuration only (risk S5); carries Stripe's `{CHECKOUT_SESSION_ID}` placeholder
    /// and nothing secret (risk S4).
    pub success_url: String,
    pub cancel_url: String,
    /// The order id, as Stripe's `client_reference_id`.
    pub client_reference_id: String,
    pub customer_email: String,
    /// On the session and on the PaymentIntent it creates (`payment_intent_data[metadata]`).
    pub metadata: Vec<(String, String)>,
    /// Sellers' products: `payment_intent_data[transfer_group]`, as on an embedded order's.
    pub transfer_group: Option<String>,
    pub expires_at_secs: i64,
    pub idempotency_key: String,
}

/// A Checkout Session's status at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Open,
    Complete,
    Expired,
}

/// The provider's view of a Checkout Session, reduced to what Kassa uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCheckoutSession {
    pub id: String,
    pub status: SessionStatus,
    /// The money was taken (`payment_status=paid`); a complete session may be unpaid while its
    /// payment is authorized only or still settling.
    pub paid: bool,
    pub url: Option<String>,
    pub amount_total_minor: i64,
    /// Lowercase ISO code as the provider reports it (checked against the order, risk W6).
    pub currency: String,
    /// Created when the customer first pays.
    pub payment_intent_id: Option<String>,
    pub expires_at_secs: i64,
    pub metadata: Vec<(String, String)>,
}

/// Refund (part of) a PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRefund {
    pub payment_intent_id: String,
    pub amount_minor: i64,
    /// A destination charge's refund: the seller's transfer and the platform's fee are taken
    /// back in proportion (`reverse_transfer`, `refund_application_fee`), so seller and
    /// platform each bear their share, and a whole refund leaves both at nothing.
    pub reverse_transfer: bool,
    pub reason: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefund {
    pub id: String,
    pub payment_intent_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub status: RefundStatus,
    pub metadata: Vec<(String, String)>,
}

/// One event from the provider's event list (used by reconciliation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEventSummary {
    pub id: String,
    pub event_type: String,
    pub created_secs: i64,
    /// The event's JSON as listed, to record in the inbox like a delivered webhook. Fetched
    /// from the provider's API with the secret key, so it needs no signature.
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<ProviderEventSummary>,
    pub has_more: bool,
}

/// How a provider call ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered and nothing happened: card declined, invalid request, idempotency
    /// conflict. Safe to compensate.
    #[error("provider refused ({code}): {message}")]
    Definite { code: String, message: String },
    /// We do not know whether it happened: timeout, connection lost, 5xx or 429 after bounded
    /// retries. Never compensate on this; retry with the same key or re-fetch.
    #[error("provider outcome unknown: {reason}")]
    Unknown { reason: String },
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// What Kassa needs from a payment provider. Implemented over HTTP by `kassa-stripe`.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    async fn create_payment_intent(
        &self,
        request: CreatePaymentIntent,
    ) -> ProviderResult<ProviderPaymentIntent>;

    async fn retrieve_payment_intent(&self, id: &str) -> ProviderResult<ProviderPaymentIntent>;

    async fn create_checkout_session(
        &self,
        request: CreateCheckoutSession,
    ) -> ProviderResult<ProviderCheckoutSession>;

    async fn retrieve_checkout_session(&self, id: &str) -> ProviderResult<ProviderCheckoutSession>;

    /// Ends an open session so that it can no longer be paid.
    async fn expire_checkout_session(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> ProviderResult<ProviderCheckoutSession>;

    async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> ProviderResult<ProviderPaymentIntent>;

    /// Captures `amount_to_capture_minor`, or everything capturable when `None`.
    /// `application_fee_minor`: a destination charge's fee on what is captured.
    async fn capture_payment_intent(
        &self,
        id: &str,
        amount_to_capture_minor: Option<i64>,
        application_fee_minor: Option<i64>,
        idempotency_key: &str,
    ) -> ProviderResult<ProviderPaymentIntent>;

    async fn create_refund(&self, request: CreateRefund) -> ProviderResult<ProviderRefund>;

    async fn retrieve_refund(&self, id: &str) -> ProviderResult<ProviderRefund>;

    /// The refunds of a PaymentIntent (the newest 100), for checking Kassa's records.
    async fn list_refunds(&self, payment_intent_id: &str) -> ProviderResult<Vec<ProviderRefund>>;

    /// Events created at or after `created_gte_secs`, newest first, one page of at most `limit`.
    async fn list_events(
        &self,
        created_gte_secs: i64,
        starting_after: Option<&str>,
        limit: u32,
    ) -> ProviderResult<EventPage>;

    /// A marketplace seller's connected account (seed 001). A provider without Connect (the
    /// deterministic simulation's) keeps this default, which refuses.
    async fn create_connected_account(
        &self,
        _request: CreateConnectedAccount,
    ) -> ProviderResult<ProviderAccount> {
        Err(unsupported("connected accounts"))
    }

    /// A connected account as it stands: its readiness, for reconciliation (Stripe sends
    /// `account.updated` only to a Connect endpoint, and lists it in no platform event list).
    async fn retrieve_account(&self, _id: &str) -> ProviderResult<ProviderAccount> {
        Err(unsupported("connected accounts"))
    }

    /// Sends a seller their share of a several-seller order's charge.
    async fn create_transfer(&self, _request: CreateTransfer) -> ProviderResult<ProviderTransfer> {
        Err(unsupported("transfers"))
    }

    /// Takes back part of a transfer (a refund's share of it).
    async fn reverse_transfer(
        &self,
        _request: CreateTransferReversal,
    ) -> ProviderResult<ProviderTransferReversal> {
        Err(unsupported("transfers"))
    }

    /// Every reversal of a transfer (to find one made under a key the provider has forgotten).
    async fn list_transfer_reversals(
        &self,
        _transfer_id: &str,
    ) -> ProviderResult<Vec<ProviderTransferReversal>> {
        Err(unsupported("transfers"))
    }

    /// Every transfer of a transfer group, for checking Kassa's books.
    async fn list_transfers(&self, _transfer_group: &str) -> ProviderResult<Vec<ProviderTransfer>> {
        Err(unsupported("transfers"))
    }

    // Subscriptions (seed 003). A provider that sells none (the deterministic simulation's)
    // keeps these defaults, which refuse.

    async fn create_customer(&self, _request: CreateCustomer) -> ProviderResult<ProviderCustomer> {
        Err(unsupported("subscriptions"))
    }

    /// A hosted page (`mode=subscription`) that starts the subscription when paid.
    async fn create_subscription_session(
        &self,
        _request: CreateSubscriptionSession,
    ) -> ProviderResult<ProviderCheckoutSession> {
        Err(unsupported("subscriptions"))
    }

    /// All of a subscription's paid invoices, for checking the ledger.
    async fn list_paid_invoices(
        &self,
        _subscription_id: &str,
    ) -> ProviderResult<Vec<ProviderInvoice>> {
        Err(unsupported("subscriptions"))
    }

    /// Ends the subscription at its period's end, or now.
    async fn cancel_subscription(
        &self,
        _id: &str,
        _at_period_end: bool,
        _idempotency_key: &str,
    ) -> ProviderResult<ProviderSubscription> {
        Err(unsupported("subscriptions"))
    }
}

/// The refusal of a provider without `what` (the deterministic simulation's).
fn unsupported(what: &str) -> ProviderError {
    ProviderError::Definite {
        code: "unsupported".into(),
        message: format!("this payment provider has no {what}"),
    }
}

/// Create a seller's connected account (Express).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateConnectedAccount {
    pub email: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: String,
}

/// A connected account's readiness, as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAccount {
    pub id: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
}

/// Send money from the platform's balance to a connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTransfer {
    pub amount_minor: i64,
    /// Lowercase ISO code.
    pub currency: String,
    pub destination: String,
    pub transfer_group: String,
    /// The charge the money comes from (`source_transaction`), so the transfer waits for its
    /// funds instead of failing on the platform's available balance.
    pub source_charge: Option<String>,
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTransfer {
    pub id: String,
    pub amount_minor: i64,
    pub amount_reversed_minor: i64,
    pub currency: String,
    pub destination: String,
    pub transfer_group: Option<String>,
}

/// Take back `amount_minor` of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTransferReversal {
    pub transfer_id: String,
    pub amount_minor: i64,
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTransferReversal {
    pub id: String,
    pub amount_minor: i64,
    pub metadata: Vec<(String, String)>,
}

/// Create the provider's customer for one of Kassa's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCustomer {
    pub email: String,
    pub metadata: Vec<(String, String)>,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCustomer {
    pub id: String,
}

/// Create a hosted page that subscribes a customer to a plan, priced by Kassa.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSubscriptionSession {
    pub plan_name: String,
    pub unit_amount_minor: i64,
    pub currency: Currency,
    /// `month` or `year`.
    pub interval: String,
    pub provider_customer_id: String,
    /// From configuration only (risk S5).
    pub success_url: String,
    pub cancel_url: String,
    /// Kassa's subscription id.
    pub client_reference_id: String,
    /// On the session and on the subscription it creates (`subscription_data[metadata]`),
    /// so every invoice carries them too.
    pub metadata: Vec<(String, String)>,
    pub expires_at_secs: i64,
    pub idempotency_key: String,
}

/// The provider's view of a subscription, reduced to what Kassa uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSubscription {
    pub id: String,
    pub customer_id: Option<String>,
    /// Stripe's status (`active`, `past_due`, `canceled`, …).
    pub status: String,
    pub cancel_at_period_end: bool,
    pub metadata: Vec<(String, String)>,
}

/// An invoice of a subscription's period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInvoice {
    pub id: String,
    pub provider_subscription_id: Option<String>,
    /// From the subscription's metadata, which the invoice carries.
    pub kassa_subscription_id: Option<String>,
    pub paid: bool,
    /// What the customer paid: the period's price less a coupon or a customer balance, plus
    /// tax. Recorded beside a grant; it never decides one (risk W6).
    pub amount_paid_minor: i64,
    /// What is still owed on it: 0 once paid in full, whatever paid it.
    pub amount_remaining_minor: i64,
    pub currency: String,
    /// The end of the period it pays for.
    pub period_end: i64,
    /// Why it was made: `subscription_create` (the first period), `subscription_cycle` (a
    /// renewal), or another (`subscription_update`, `manual`, …).
    pub billing_reason: Option<String>,
    /// The price its subscription line billed; `None` when it has no single subscription line
    /// Kassa can read (several items, only prorations, a fractional unit amount).
    pub price: Option<InvoicePrice>,
}

/// The price an invoice's subscription line billed, before any discount or tax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvoicePrice {
    pub unit_amount_minor: i64,
    pub quantity: i64,
}

impl ProviderInvoice {
    /// Whether it bills one whole period: the first or a renewal, not a proration or a manual
    /// invoice.
    pub fn bills_a_period(&self) -> bool {
        matches!(
            self.billing_reason.as_deref(),
            Some("subscription_create" | "subscription_cycle")
        )
    }

    /// What this invoice, reported paid, owes a subscriber of a plan priced `unit_amount_minor`
    /// in `currency`: the period's credits only for one period of the plan's price paid in
    /// full (risk W6), whatever coupon, balance or tax changed what was paid.
    pub fn period_grant(&self, unit_amount_minor: i64, currency: &str) -> PeriodGrant {
        period_grant(
            PlanPrice {
                unit_amount_minor,
                currency,
            },
            PaidInvoice {
                bills_a_period: self.bills_a_period(),
                currency: &self.currency,
                amount_remaining_minor: self.amount_remaining_minor,
                price: self
                    .price
                    .map(|price| (price.unit_amount_minor, price.quantity)),
            },
        )
    }
}

/// A `mode=subscription` Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSubscriptionSession {
    pub id: String,
    pub status: SessionStatus,
    pub customer_id: Option<String>,
    pub subscription_id: Option<String>,
    pub metadata: Vec<(String, String)>,
}

/// A Charge as carried by `charge.*` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCharge {
    pub id: String,
    pub payment_intent_id: Option<String>,
    pub amount_minor: i64,
    pub amount_captured_minor: i64,
    pub amount_refunded_minor: i64,
    pub currency: String,
    /// The refunds embedded in the charge (`refunds.data`), when the event carries them.
    pub refunds: Vec<ProviderRefund>,
}

/// A Dispute as carried by `charge.dispute.*` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderDispute {
    pub id: String,
    pub charge_id: String,
    pub payment_intent_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    /// Stripe's dispute status (`needs_response`, `under_review`, `won`, `lost`, …).
    pub status: String,
    /// Stripe's reason (`fraudulent`, `product_not_received`, …).
    pub reason: Option<String>,
    /// When evidence is due (`evidence_details.due_by`).
    pub evidence_due_by: Option<i64>,
}

/// The object an event is about (`data.object`), parsed into the port's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEventObject {
    PaymentIntent(ProviderPaymentIntent),
    Refund(ProviderRefund),
    Charge(ProviderCharge),
    Dispute(ProviderDispute),
    CheckoutSession(ProviderCheckoutSession),
    SubscriptionSession(ProviderSubscriptionSession),
    Subscription(ProviderSubscription),
    Invoice(ProviderInvoice),
    Account(ProviderAccount),
    /// An object Kassa does not act on; recorded and acknowledged.
    Other {
        object_type: String,
    },
}

/// A verified webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub id: String,
    pub event_type: String,
    pub created_secs: i64,
    pub object: ProviderEventObject,
}

/// Why a webhook delivery was refused. The HTTP answer must not say which (risk S8): both map to
/// the same 400 body; the variant is for logs and metrics only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejected {
    /// Missing or malformed header, no matching signature, or timestamp outside tolerance.
    #[error("webhook signature not accepted")]
    Signature,
    /// Correctly signed, but the body is not an event Kassa can read.
    #[error("webhook body is not a readable event")]
    Malformed,
}

/// Verifies a webhook delivery against every configured secret, then parses it.
pub trait WebhookVerifier: Send + Sync {
    fn verify_and_parse(
        &self,
        payload: &[u8],
        signature_header: &str,
        now_secs: i64,
    ) -> Result<ProviderEvent, WebhookRejected>;

    /// Parses an event body that was verified when it arrived (re-processing from the inbox).
    fn parse(&self, payload: &[u8]) -> Result<ProviderEvent, WebhookRejected>;
}
