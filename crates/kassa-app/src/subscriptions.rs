//! Plans, subscriptions and spending credits (seed 003).
//!
//! Subscribing is the hosted-checkout saga's shape with nothing to reserve: one local
//! transaction records the customer and an `incomplete` subscription under the client's
//! `Idempotency-Key`; then the provider calls, each with a key derived from Kassa's ids (the
//! customer from its id, the page from the subscription's), so a retry after an unknown outcome
//! makes nothing twice; then the page is recorded. Credits are granted by the paid invoices'
//! events alone (see `webhooks`), never here.

use kassa_domain::credits::{self, EntryKind, HeldPlan, SubscriptionStatus};
use kassa_domain::text::fields;

use crate::App;
use crate::checkout::HOSTED_EXPIRY_MIN_SECS;
use crate::error::{AppError, AppResult};
use crate::ports::{
    Actor, BillingEffect, CreateCustomer, CreateSubscriptionSession, CreditEntry, CustomerRecord,
    LedgerWrite, NewCreditEntry, NewSubscription, PlanRecord, ProviderError, SessionStatus,
    SubscriptionRecord, SubscriptionStart,
};
use crate::validate;

/// Plan and debit intervals Stripe's recurring prices take.
pub const PLAN_INTERVALS: &[&str] = &["month", "year"];
/// Most entries `GET /v1/customers/{id}/credits` lists.
pub const CREDIT_ENTRIES_LISTED_MAX: i64 = 100;
const PROVIDER_RETRY_AFTER_SECS: i64 = 2;

pub struct NewPlan {
    pub name: String,
    pub unit_amount_minor: i64,
    pub currency: String,
    pub interval: String,
    pub credits: i64,
}

pub struct SubscribeInput {
    pub plan_id: String,
    pub email: String,
    pub key_scope: String,
    pub idempotency_key: Option<String>,
    pub actor: Actor,
}

/// A subscription waiting on its hosted page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionPage {
    pub customer_id: String,
    pub subscription_id: String,
    pub session_id: String,
    pub url: String,
    pub expires_at: i64,
}

pub struct DebitInput {
    pub customer_id: String,
    pub key_scope: String,
    pub idempotency_key: Option<String>,
    pub amount: i64,
    pub reason: Option<String>,
}

/// A customer with their subscriptions and balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerView {
    pub customer: CustomerRecord,
    pub subscriptions: Vec<SubscriptionRecord>,
}

impl App {
    pub async fn create_plan(&self, new: NewPlan) -> AppResult<PlanRecord> {
        let name = validate::shaped("name", fields::PRODUCT_NAME, &new.name)?;
        validate::unit_amount("unit_amount", new.unit_amount_minor)?;
        let currency = validate::currency("currency", &new.currency)?;
        // Each period is one charge: below Stripe's minimum it could never be paid.
        let minimum = currency.minimum_charge_minor();
        if new.unit_amount_minor < minimum {
            return Err(AppError::invalid(
                "unit_amount",
                format!(
                    "must be at least {minimum}, the smallest amount Stripe charges in {}",
                    currency.code()
                ),
            ));
        }
        if !PLAN_INTERVALS.contains(&new.interval.as_str()) {
            return Err(AppError::invalid("interval", "must be month or year"));
        }
        validate::credits("credits", new.credits)?;
        let plan = PlanRecord {
            id: self.ids.new_id("plan"),
            name,
            unit_amount_minor: new.unit_amount_minor,
            currency: currency.code().to_owned(),
            interval: new.interval,
            credits: new.credits,
            created_at: self.clock.now_secs(),
        };
        self.store.create_plan(&plan).await?;
        Ok(plan)
    }

    /// Starts (or, for the same key and request, resumes) a subscription and returns its hosted
    /// page. An e-mail holds one live subscription per plan: another key for a plan it holds
    /// answers with that subscription's page while the page is open, and is refused (409,
    /// naming it) once it is active or past due; one whose page ran out unpaid is ended first.
    pub async fn subscribe(&self, input: SubscribeInput) -> AppResult<SubscriptionPage> {
        let key = validate::idempotency_key(input.idempotency_key.as_deref())?;
        let email = validate::shaped("email", fields::EMAIL, &input.email)?;
        let urls = self
            .settings
            .hosted_checkout
            .clone()
            .ok_or_else(|| AppError::InvalidState {
                message: "hosted checkout is not configured (KASSA_CHECKOUT_SUCCESS_URL)".into(),
            })?;
        let plan = self
            .store
            .plan(&input.plan_id)
            .await?
            .ok_or(AppError::NotFound { what: "plan" })?;
        let new = NewSubscription {
            id: self.ids.new_id("sub"),
            new_customer_id: self.ids.new_id("cus"),
            email: email.clone(),
            plan_id: plan.id.clone(),
            client_scope: input.key_scope,
            client_key: key,
        };
        let mut ended_one = false;
        let subscription = loop {
            let now = self.clock.now_secs();
            let held = match self
                .store
                .start_subscription(&new, &input.actor, now)
                .await?
            {
                SubscriptionStart::Started(subscription) => break subscription,
                SubscriptionStart::KeyReused => return Err(AppError::IdempotencyKeyReused),
                SubscriptionStart::Held(held) => held,
            };
            // The page's expiry, or (none recorded yet) the one it is made with.
            let page_expires_at = held
                .checkout_expires_at
                .unwrap_or(held.created_at.saturating_add(HOSTED_EXPIRY_MIN_SECS));
            match credits::held_plan(held.status, page_expires_at, now) {
                // Resumed like a retry of its own key: the page is made (once) from its ids.
                HeldPlan::ReturnOpen => break held,
                HeldPlan::Refuse => return Err(already_held(&held, held.status.as_str())),
                // Once only: a second one held is another request's, and decides.
                HeldPlan::EndThenRetry | HeldPlan::Start if ended_one => {
                    return Err(already_held(&held, held.status.as_str()));
                }
                HeldPlan::EndThenRetry => {
                    if self
                        .end_incomplete_subscription(held.clone(), &input.actor)
                        .await?
                        .is_none()
                    {
                        // Paid after all: its events will make it active.
                        return Err(already_held(&held, "paid, not yet reported"));
                    }
                }
                HeldPlan::Start => {}
            }
            ended_one = true;
        };
        if let Some(page) = page_of(&subscription) {
            return Ok(page);
        }
        if subscription.status != SubscriptionStatus::Incomplete {
            return Err(AppError::InvalidState {
                message: format!("this subscription is {}", subscription.status),
            });
        }
        let customer = match self.provider_customer(&subscription.customer_id).await? {
            Ok(customer) => customer,
            Err(error) => {
                return Err(self
                    .refused_subscription(&subscription, error, &input.actor)
                    .await);
            }
        };
        let request = CreateSubscriptionSession {
            plan_name: plan.name.clone(),
            unit_amount_minor: plan.unit_amount_minor,
            currency: validate::currency("currency", &plan.currency)?,
            interval: plan.interval.clone(),
            provider_customer_id: customer,
            success_url: urls.success_url,
            cancel_url: urls.cancel_url,
            client_reference_id: subscription.id.clone(),
            metadata: vec![
                ("kassa_subscription_id".into(), subscription.id.clone()),
                ("kassa_customer_id".into(), subscription.customer_id.clone()),
            ],
            // From the subscription, not from now: a retry must send what the first call sent,
            // or Stripe refuses the key's reuse.
            expires_at_secs: subscription.created_at + HOSTED_EXPIRY_MIN_SECS,
            idempotency_key: kassa_domain::provider_keys::create_checkout_session(&subscription.id),
        };
        let session = match self.provider.create_subscription_session(request).await {
            Ok(session) => session,
            Err(error) => {
                return Err(self
                    .refused_subscription(&subscription, error, &input.actor)
                    .await);
            }
        };
        let recorded = self
            .store
            .record_subscription_page(&subscription.id, &session, self.clock.now_secs())
            .await?;
        if recorded.provider_checkout_session_id.as_deref() != Some(session.id.as_str()) {
            // Ended while the page was being made (canceled): nobody may pay this page.
            let key = kassa_domain::provider_keys::expire_checkout_session(&subscription.id);
            if let Err(error) = self
                .provider
                .expire_checkout_session(&session.id, &key)
                .await
            {
                tracing::warn!(session_id = %session.id, %error, "could not expire the page of an ended subscription");
            }
            return Err(AppError::InvalidState {
                message: format!("this subscription is {}", recorded.status),
            });
        }
        page_of(&recorded).ok_or_else(|| AppError::InvalidState {
            message: format!("this subscription is {}", recorded.status),
        })
    }

    /// The customer's id at the provider, created once with a key derived from Kassa's id; the
    /// provider's refusal as the inner error.
    async fn provider_customer(
        &self,
        customer_id: &str,
    ) -> AppResult<Result<String, ProviderError>> {
        let customer = self
            .store
            .customer(customer_id)
            .await?
            .ok_or(AppError::NotFound { what: "customer" })?;
        if let Some(id) = customer.provider_customer_id {
            return Ok(Ok(id));
        }
        let request = CreateCustomer {
            email: customer.email.clone(),
            metadata: vec![("kassa_customer_id".into(), customer.id.clone())],
            idempotency_key: kassa_domain::provider_keys::create_customer(&customer.id),
        };
        let created = match self.provider.create_customer(request).await {
            Ok(created) => created,
            Err(error) => return Ok(Err(error)),
        };
        Ok(Ok(self
            .store
            .record_provider_customer(&customer.id, &created.id)
            .await?))
    }

    /// An unknown outcome leaves the subscription incomplete for the retry (same keys); a
    /// definite refusal ends it, so nothing waits on a page that will never exist.
    async fn refused_subscription(
        &self,
        subscription: &SubscriptionRecord,
        error: ProviderError,
        actor: &Actor,
    ) -> AppError {
        let ProviderError::Definite { code, message } = error else {
            return AppError::ProviderUnavailable {
                retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
            };
        };
        let ended = BillingEffect::PageExpired {
            kassa_subscription_id: Some(subscription.id.clone()),
        };
        if let Err(error) = self
            .store
            .observe_billing(&ended, actor, self.clock.now_secs())
            .await
        {
            return error.into();
        }
        AppError::ProviderRefused {
            message: format!("{code}: {message}"),
        }
    }

    pub async fn customer_view(&self, customer_id: &str) -> AppResult<CustomerView> {
        let customer = self
            .store
            .customer(customer_id)
            .await?
            .ok_or(AppError::NotFound { what: "customer" })?;
        let subscriptions = self.store.customer_subscriptions(customer_id).await?;
        Ok(CustomerView {
            customer,
            subscriptions,
        })
    }

    /// The balance and the newest entries.
    pub async fn customer_credits(&self, customer_id: &str) -> AppResult<(i64, Vec<CreditEntry>)> {
        let customer = self
            .store
            .customer(customer_id)
            .await?
            .ok_or(AppError::NotFound { what: "customer" })?;
        let entries = self
            .store
            .credit_entries(customer_id, CREDIT_ENTRIES_LISTED_MAX)
            .await?;
        Ok((customer.balance, entries))
    }

    /// Spends credits once per `Idempotency-Key`; never below zero.
    pub async fn debit_credits(&self, input: DebitInput) -> AppResult<CreditEntry> {
        let key = validate::idempotency_key(input.idempotency_key.as_deref())?;
        validate::credits("amount", input.amount)?;
        if input.amount == 0 {
            return Err(AppError::invalid("amount", "must be at least 1"));
        }
        let reason = input
            .reason
            .as_deref()
            .map(|reason| validate::shaped("reason", fields::PRODUCT_NAME, reason))
            .transpose()?;
        let entry = NewCreditEntry {
            id: self.ids.new_id("cre"),
            customer_id: input.customer_id.clone(),
            amount: input.amount,
            business_key: format!("debit:{}:{}:{key}", input.customer_id, input.key_scope),
            reason: reason.clone(),
            subscription_id: None,
        };
        let written = self
            .store
            .write_entry(EntryKind::Debit, &entry, self.clock.now_secs())
            .await?;
        match written {
            LedgerWrite::Written(entry) => Ok(entry),
            // The same key again: the first answer, if it was the same request.
            LedgerWrite::AlreadyThere(existing)
                if existing.amount == -input.amount && existing.reason == reason =>
            {
                Ok(existing)
            }
            LedgerWrite::AlreadyThere(_) => Err(AppError::IdempotencyKeyReused),
            LedgerWrite::Overdraft { balance } => Err(AppError::InsufficientCredits { balance }),
            LedgerWrite::CustomerMissing => Err(AppError::NotFound { what: "customer" }),
        }
    }

    /// Cancels at the period's end (the customer keeps what they paid for), or at once. A
    /// subscription whose page was never paid is ended by expiring the page first.
    pub async fn cancel_subscription(
        &self,
        subscription_id: &str,
        at_period_end: bool,
        actor: &Actor,
    ) -> AppResult<SubscriptionRecord> {
        let subscription = self.subscription(subscription_id).await?;
        match subscription.status {
            SubscriptionStatus::Canceled => return Ok(subscription),
            SubscriptionStatus::Incomplete => {
                return self
                    .end_incomplete_subscription(subscription, actor)
                    .await?
                    .ok_or_else(|| AppError::InvalidState {
                        message: "the customer has just subscribed; cancel again once it is active"
                            .into(),
                    });
            }
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => {}
        }
        let provider_id = subscription
            .provider_subscription_id
            .clone()
            .ok_or_else(|| AppError::InvalidState {
                message: "this subscription is not known to the provider yet".into(),
            })?;
        let when = if at_period_end { "end" } else { "now" };
        let key = kassa_domain::provider_keys::cancel_subscription(&subscription.id, when);
        let reported = self
            .provider
            .cancel_subscription(&provider_id, at_period_end, &key)
            .await
            .map_err(|error| match error {
                ProviderError::Definite { message, .. } => AppError::InvalidState { message },
                ProviderError::Unknown { .. } => AppError::ProviderUnavailable {
                    retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                },
            })?;
        let effect = if reported.status == "canceled" {
            BillingEffect::Ended {
                kassa_subscription_id: Some(subscription.id.clone()),
                provider_subscription_id: Some(provider_id),
            }
        } else {
            BillingEffect::CancelAtPeriodEnd {
                kassa_subscription_id: subscription.id.clone(),
            }
        };
        self.store
            .observe_billing(&effect, actor, self.clock.now_secs())
            .await?;
        self.subscription(subscription_id).await
    }

    /// Ends an incomplete subscription, expiring its page first; `None` when the page was paid
    /// (the subscription's events will make it active).
    async fn end_incomplete_subscription(
        &self,
        subscription: SubscriptionRecord,
        actor: &Actor,
    ) -> AppResult<Option<SubscriptionRecord>> {
        if let Some(session_id) = &subscription.provider_checkout_session_id {
            let key = kassa_domain::provider_keys::expire_checkout_session(&subscription.id);
            match self
                .provider
                .expire_checkout_session(session_id, &key)
                .await
            {
                Ok(_) => {}
                // Not open any more: expired already, or paid (the subscription's events will
                // make it active; it is canceled from there).
                Err(ProviderError::Definite { .. }) => {
                    let session = self.current_session(session_id).await?;
                    if session.status != SessionStatus::Expired {
                        return Ok(None);
                    }
                }
                Err(ProviderError::Unknown { .. }) => {
                    return Err(AppError::ProviderUnavailable {
                        retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
                    });
                }
            }
        }
        let ended = BillingEffect::PageExpired {
            kassa_subscription_id: Some(subscription.id.clone()),
        };
        self.store
            .observe_billing(&ended, actor, self.clock.now_secs())
            .await?;
        self.subscription(&subscription.id).await.map(Some)
    }

    /// The subscription a hosted page was made for (the page Stripe sends customers back from).
    pub async fn subscription_for_checkout_session(
        &self,
        session_id: &str,
    ) -> AppResult<SubscriptionRecord> {
        self.store
            .subscription_for_session(session_id)
            .await?
            .ok_or(AppError::NotFound {
                what: "subscription",
            })
    }

    pub async fn subscription(&self, id: &str) -> AppResult<SubscriptionRecord> {
        self.store
            .subscription(id)
            .await?
            .ok_or(AppError::NotFound {
                what: "subscription",
            })
    }
}

/// The refusal of a second subscription to a plan the e-mail holds, naming the one it holds
/// (in `state`).
fn already_held(held: &SubscriptionRecord, state: &str) -> AppError {
    AppError::InvalidState {
        message: format!(
            "this e-mail already holds subscription {} to plan {} ({state}); it is not subscribed twice",
            held.id, held.plan_id
        ),
    }
}

fn page_of(subscription: &SubscriptionRecord) -> Option<SubscriptionPage> {
    Some(SubscriptionPage {
        customer_id: subscription.customer_id.clone(),
        subscription_id: subscription.id.clone(),
        session_id: subscription.provider_checkout_session_id.clone()?,
        url: subscription.checkout_url.clone()?,
        expires_at: subscription.checkout_expires_at?,
    })
}
