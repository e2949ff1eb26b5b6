//! A scripted, in-memory payment provider for saga tests that need exact fault timing (a crash
//! between phases, a response lost after the intent was created). It keeps Stripe's idempotency
//! semantics: the same key returns the same PaymentIntent. End-to-end tests use the emulator.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use kassa_app::ports::{
    CreateCheckoutSession, CreatePaymentIntent, CreateRefund, EventPage, PaymentProvider,
    ProviderCheckoutSession, ProviderError, ProviderPaymentIntent, ProviderRefund, ProviderResult,
    SessionStatus,
};
use kassa_domain::payment::PaymentStatus;

/// What the next create call does.
#[derive(Debug, Clone)]
pub enum Script {
    /// Refuse: nothing created.
    Decline,
    /// Time out before reaching the provider: nothing created, outcome unknown.
    LostRequest,
    /// Create the intent, then lose the answer: the intent exists, outcome unknown.
    LostResponse,
    /// Wait this long, then answer normally.
    Delay(Duration),
}

#[derive(Default)]
pub struct FakeProvider {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<Script>,
    /// Intents by idempotency key.
    intents: BTreeMap<String, ProviderPaymentIntent>,
    /// Checkout Sessions by idempotency key, and what each was created with.
    sessions: BTreeMap<String, (ProviderCheckoutSession, CreateCheckoutSession)>,
    create_calls: usize,
}

impl FakeProvider {
    pub fn new() -> FakeProvider {
        FakeProvider::default()
    }

    /// Queues behaviours for the next create calls, in order.
    pub fn script(&self, steps: impl IntoIterator<Item = Script>) {
        self.lock().script.extend(steps);
    }

    pub fn intents(&self) -> Vec<ProviderPaymentIntent> {
        self.lock().intents.values().cloned().collect()
    }

    /// Moves an intent as a customer's confirmation at the provider would.
    pub fn set_status(&self, intent_id: &str, status: PaymentStatus) {
        let mut state = self.lock();
        if let Some(intent) = state
            .intents
            .values_mut()
            .find(|intent| intent.id == intent_id)
        {
            intent.status = status;
            if status == PaymentStatus::Succeeded {
                intent.amount_received_minor = intent.amount_minor;
            }
        }
    }

    /// Records a failed attempt on an intent, as a declined card at the provider would.
    pub fn set_failed(&self, intent_id: &str, error: &str) {
        self.set_status(intent_id, PaymentStatus::RequiresPaymentMethod);
        let mut state = self.lock();
        if let Some(intent) = state
            .intents
            .values_mut()
            .find(|intent| intent.id == intent_id)
        {
            intent.last_error = Some(error.to_owned());
        }
    }

    /// Moves a Checkout Session as the provider would: to `status`, with the PaymentIntent it
    /// made, if any (`None` with `Complete`: a page completed with no payment behind it).
    pub fn set_session(
        &self,
        session_id: &str,
        status: SessionStatus,
        payment_intent_id: Option<&str>,
    ) {
        let mut state = self.lock();
        if let Some((session, _)) = state
            .sessions
            .values_mut()
            .find(|(session, _)| session.id == session_id)
        {
            session.status = status;
            session.payment_intent_id = payment_intent_id.map(str::to_owned);
        }
    }

    /// Every session created, with the request that created it.
    pub fn sessions(&self) -> Vec<(ProviderCheckoutSession, CreateCheckoutSession)> {
        self.lock().sessions.values().cloned().collect()
    }

    pub fn create_calls(&self) -> usize {
        self.lock().create_calls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Plays the next scripted step around a create call.
    async fn scripted<T>(&self, create: impl Fn(&FakeProvider) -> T) -> ProviderResult<T> {
        let step = {
            let mut state = self.lock();
            state.create_calls += 1;
            state.script.pop_front()
        };
        match step {
            Some(Script::Decline) => Err(ProviderError::Definite {
                code: "amount_too_small".into(),
                message: "scripted refusal".into(),
            }),
            Some(Script::LostRequest) => Err(unknown("scripted timeout before the provider")),
            Some(Script::LostResponse) => {
                create(self);
                Err(unknown("scripted lost response"))
            }
            Some(Script::Delay(wait)) => {
                tokio::time::sleep(wait).await;
                Ok(create(self))
            }
            None => Ok(create(self)),
        }
    }

    fn create_session(&self, request: &CreateCheckoutSession) -> ProviderCheckoutSession {
        let mut state = self.lock();
        let count = state.sessions.len();
        let (session, _) = state
            .sessions
            .entry(request.idempotency_key.clone())
            .or_insert_with(|| {
                let id = format!("cs_fake{count}");
                let session = ProviderCheckoutSession {
                    url: Some(format!("https://pay.fake.test/{id}")),
                    id,
                    status: SessionStatus::Open,
                    paid: false,
                    amount_total_minor: request
                        .lines
                        .iter()
                        .map(|line| line.unit_amount_minor * line.quantity)
                        .sum(),
                    currency: request.currency.code().to_owned(),
                    payment_intent_id: None,
                    expires_at_secs: request.expires_at_secs,
                    metadata: request.metadata.clone(),
                };
                (session, request.clone())
            });
        session.clone()
    }

    fn create(&self, request: &CreatePaymentIntent) -> ProviderPaymentIntent {
        let mut state = self.lock();
        let count = state.intents.len();
        state
            .intents
            .entry(request.idempotency_key.clone())
            .or_insert_with(|| {
                let id = format!("pi_fake{count}");
                ProviderPaymentIntent {
                    destination: request.destination.clone(),
                    client_secret: Some(format!("{id}_secret_x")),
                    id,
                    status: PaymentStatus::RequiresPaymentMethod,
                    amount_minor: request.amount_minor,
                    amount_capturable_minor: 0,
                    amount_received_minor: 0,
                    currency: request.currency.code().to_owned(),
                    latest_charge: None,
                    last_error: None,
                    metadata: request.metadata.clone(),
                }
            })
            .clone()
    }
}

fn unknown(reason: &str) -> ProviderError {
    ProviderError::Unknown {
        reason: reason.into(),
    }
}

#[async_trait]
impl PaymentProvider for FakeProvider {
    async fn create_payment_intent(
        &self,
        request: CreatePaymentIntent,
    ) -> ProviderResult<ProviderPaymentIntent> {
        self.scripted(|fake| fake.create(&request)).await
    }

    async fn create_checkout_session(
        &self,
        request: CreateCheckoutSession,
    ) -> ProviderResult<ProviderCheckoutSession> {
        self.scripted(|fake| fake.create_session(&request)).await
    }

    async fn retrieve_checkout_session(&self, id: &str) -> ProviderResult<ProviderCheckoutSession> {
        self.lock()
            .sessions
            .values()
            .map(|(session, _)| session)
            .find(|session| session.id == id)
            .cloned()
            .ok_or_else(|| ProviderError::Definite {
                code: "resource_missing".into(),
                message: id.into(),
            })
    }

    /// Expires as Stripe does: only an open session.
    async fn expire_checkout_session(
        &self,
        id: &str,
        _key: &str,
    ) -> ProviderResult<ProviderCheckoutSession> {
        let mut state = self.lock();
        let session = state
            .sessions
            .values_mut()
            .map(|(session, _)| session)
            .find(|session| session.id == id)
            .ok_or_else(|| ProviderError::Definite {
                code: "resource_missing".into(),
                message: id.into(),
            })?;
        if session.status != SessionStatus::Open {
            return Err(ProviderError::Definite {
                code: "checkout_session_not_open".into(),
                message: format!("cannot expire a {:?} session", session.status),
            });
        }
        session.status = SessionStatus::Expired;
        Ok(session.clone())
    }

    async fn retrieve_payment_intent(&self, id: &str) -> ProviderResult<ProviderPaymentIntent> {
        self.lock()
            .intents
            .values()
            .find(|intent| intent.id == id)
            .cloned()
            .ok_or_else(|| ProviderError::Definite {
                code: "resource_missing".into(),
                message: id.into(),
            })
    }

    /// Cancels as Stripe does: only an intent not yet succeeded or canceled.
    async fn cancel_payment_intent(
        &self,
        id: &str,
        _key: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        let current = self.retrieve_payment_intent(id).await?;
        if current.status.is_terminal() {
            return Err(ProviderError::Definite {
                code: "payment_intent_unexpected_state".into(),
                message: format!("cannot cancel a {} intent", current.status),
            });
        }
        self.set_status(id, PaymentStatus::Canceled);
        self.retrieve_payment_intent(id).await
    }

    /// Captures as Stripe does: only an intent waiting for capture, at most what it holds.
    async fn capture_payment_intent(
        &self,
        id: &str,
        amount: Option<i64>,
        _application_fee: Option<i64>,
        _key: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        let current = self.retrieve_payment_intent(id).await?;
        if current.status != PaymentStatus::RequiresCapture {
            return Err(ProviderError::Definite {
                code: "payment_intent_unexpected_state".into(),
                message: format!("cannot capture a {} intent", current.status),
            });
        }
        self.set_status(id, PaymentStatus::Succeeded);
        let mut state = self.lock();
        let intent = state
            .intents
            .values_mut()
            .find(|intent| intent.id == id)
            .ok_or_else(|| unknown("intent vanished"))?;
        intent.amount_received_minor = amount.unwrap_or(intent.amount_minor);
        intent.amount_capturable_minor = 0;
        Ok(intent.clone())
    }

    async fn create_refund(&self, _request: CreateRefund) -> ProviderResult<ProviderRefund> {
        Err(unknown("refunds are not scripted"))
    }

    async fn retrieve_refund(&self, _id: &str) -> ProviderResult<ProviderRefund> {
        Err(unknown("refunds are not scripted"))
    }

    async fn list_refunds(&self, _intent: &str) -> ProviderResult<Vec<ProviderRefund>> {
        Ok(Vec::new())
    }

    async fn list_events(
        &self,
        _created_gte: i64,
        _after: Option<&str>,
        _limit: u32,
    ) -> ProviderResult<EventPage> {
        Ok(EventPage {
            events: Vec::new(),
            has_more: false,
        })
    }
}
