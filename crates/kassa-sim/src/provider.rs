//! A simulated Stripe: PaymentIntents, refunds and their events, in memory, with Stripe's rules
//! (idempotency keys, what may be confirmed, captured, canceled and refunded) and seeded faults:
//! a request lost before it arrives, an answer lost after the work was done, and the process
//! dying on either side of the call. Customers act on it directly (confirm, authenticate);
//! events wait in a queue the driver delivers from, duplicated, reordered or never.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use kassa_app::ports::{
    CaptureMethod, Clock, CreateCheckoutSession, CreatePaymentIntent, CreateRefund, EventPage,
    PaymentProvider, ProviderCharge, ProviderCheckoutSession, ProviderError, ProviderEvent,
    ProviderEventObject, ProviderEventSummary, ProviderPaymentIntent, ProviderRefund,
    ProviderResult,
};
use kassa_domain::payment::PaymentStatus;
use kassa_domain::refund::RefundStatus;
use kassa_testkit::verifier::MemoryVerifier;
use rand::Rng;

use crate::Dice;
use crate::crash::Crashes;

/// How a customer answers the payment page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Card {
    Succeeds,
    Declined,
    /// 3-D Secure: the intent waits for the customer to authenticate.
    Authenticates,
}

struct Intent {
    public: ProviderPaymentIntent,
    capture_method: CaptureMethod,
}

#[derive(Default)]
struct Books {
    intents: Vec<Intent>,
    intent_by_key: BTreeMap<String, usize>,
    refunds: Vec<ProviderRefund>,
    refund_by_key: BTreeMap<String, usize>,
    /// Every event, oldest first (the event list).
    events: Vec<ProviderEvent>,
    /// Events not yet handed to the driver for delivery.
    undelivered: Vec<ProviderEvent>,
    /// Refunds Kassa asked for beyond what the payment had left. Stripe refuses them, but Kassa
    /// must never ask (its own bound, risk P6): the simulation fails on any.
    over_refunds: Vec<String>,
}

pub struct SimProvider {
    books: Mutex<Books>,
    dice: Dice,
    crashes: Arc<Crashes>,
    clock: Arc<dyn Clock>,
    verifier: Arc<MemoryVerifier>,
    /// Out of 1,000 calls, how many lose the request and how many the answer.
    faults_per_mille: Mutex<u32>,
}

fn definite(code: &str, message: String) -> ProviderError {
    ProviderError::Definite {
        code: code.into(),
        message,
    }
}

fn missing(id: &str) -> ProviderError {
    definite("resource_missing", format!("no such object: {id}"))
}

impl SimProvider {
    pub fn new(
        dice: Dice,
        crashes: Arc<Crashes>,
        clock: Arc<dyn Clock>,
        verifier: Arc<MemoryVerifier>,
        faults_per_mille: u32,
    ) -> SimProvider {
        SimProvider {
            books: Mutex::default(),
            dice,
            crashes,
            clock,
            verifier,
            faults_per_mille: Mutex::new(faults_per_mille),
        }
    }

    pub fn stop_faults(&self) {
        *self
            .faults_per_mille
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = 0;
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn over_refunds(&self) -> Vec<String> {
        self.books().over_refunds.clone()
    }

    /// Payments taken and refunds that went through, for the run's summary.
    pub fn money_moved(&self) -> (usize, usize) {
        let books = self.books();
        let captured = books
            .intents
            .iter()
            .filter(|intent| intent.public.status == PaymentStatus::Succeeded)
            .count();
        let refunded = books
            .refunds
            .iter()
            .filter(|refund| refund.status == RefundStatus::Succeeded)
            .count();
        (captured, refunded)
    }

    /// Every event sent, in order, as text: where the simulated Stripe ended up.
    pub fn fingerprint(&self) -> String {
        format!("{:?}", self.books().events)
    }

    /// The events not yet handed out, oldest first.
    pub fn take_undelivered(&self) -> Vec<ProviderEvent> {
        std::mem::take(&mut self.books().undelivered)
    }

    /// A call as it crosses the network: the process may die before it leaves, the request may
    /// be lost, the answer may be lost after `work` was done, the process may die after.
    async fn call<T>(
        &self,
        work: impl FnOnce(&mut Books) -> ProviderResult<T>,
    ) -> ProviderResult<T> {
        self.crashes.point().await;
        let faults = *self
            .faults_per_mille
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let roll = self.dice.roll(|rng| rng.random_range(0..1_000));
        if roll < faults {
            return Err(ProviderError::Unknown {
                reason: "simulated: request lost".into(),
            });
        }
        let answer = work(&mut self.books());
        self.crashes.point().await;
        if roll < 2 * faults {
            return Err(ProviderError::Unknown {
                reason: "simulated: answer lost".into(),
            });
        }
        answer
    }

    fn emit(&self, books: &mut Books, event_type: &str, object: ProviderEventObject) {
        let event = ProviderEvent {
            id: format!("evt_{:05}", books.events.len()),
            event_type: event_type.into(),
            created_secs: self.clock.now_secs(),
            object,
        };
        self.verifier.register(event.clone());
        books.events.push(event.clone());
        books.undelivered.push(event);
    }

    fn emit_intent(&self, books: &mut Books, index: usize, event_type: &str) {
        let object = ProviderEventObject::PaymentIntent(books.intents[index].public.clone());
        self.emit(books, event_type, object);
    }

    fn emit_refund(&self, books: &mut Books, index: usize) {
        let refund = books.refunds[index].clone();
        self.emit(
            books,
            "refund.updated",
            ProviderEventObject::Refund(refund.clone()),
        );
        if refund.status == RefundStatus::Succeeded {
            let Some(intent) = refund
                .payment_intent_id
                .as_deref()
                .and_then(|id| books.intents.iter().find(|i| i.public.id == id))
            else {
                return;
            };
            let charge = charge_of(&intent.public, &books.refunds);
            self.emit(
                books,
                "charge.refunded",
                ProviderEventObject::Charge(charge),
            );
        }
    }

    /// The customer pays on the payment page.
    pub fn confirm(&self, intent_id: &str, card: Card) {
        let mut books = self.books();
        let Some(index) = books.intents.iter().position(|i| i.public.id == intent_id) else {
            return;
        };
        let intent = &mut books.intents[index];
        if intent.public.status != PaymentStatus::RequiresPaymentMethod {
            return;
        }
        match card {
            Card::Declined => {
                intent.public.last_error = Some("card_declined".into());
                intent.public.status = PaymentStatus::RequiresPaymentMethod;
                self.emit_intent(&mut books, index, "payment_intent.payment_failed");
            }
            Card::Authenticates => {
                intent.public.status = PaymentStatus::RequiresAction;
                self.emit_intent(&mut books, index, "payment_intent.requires_action");
            }
            Card::Succeeds => self.authorize(&mut books, index),
        }
    }

    /// The customer completes (or abandons, `passes == false`) 3-D Secure.
    pub fn authenticate(&self, intent_id: &str, passes: bool) {
        let mut books = self.books();
        let Some(index) = books.intents.iter().position(|i| i.public.id == intent_id) else {
            return;
        };
        if books.intents[index].public.status != PaymentStatus::RequiresAction {
            return;
        }
        if passes {
            self.authorize(&mut books, index);
        } else {
            let intent = &mut books.intents[index].public;
            intent.status = PaymentStatus::RequiresPaymentMethod;
            intent.last_error = Some("authentication_failed".into());
            self.emit_intent(&mut books, index, "payment_intent.payment_failed");
        }
    }

    fn authorize(&self, books: &mut Books, index: usize) {
        let intent = &mut books.intents[index];
        intent.public.last_error = None;
        intent.public.latest_charge = Some(format!("ch_{}", &intent.public.id[3..]));
        match intent.capture_method {
            CaptureMethod::Automatic => {
                intent.public.status = PaymentStatus::Succeeded;
                intent.public.amount_received_minor = intent.public.amount_minor;
                self.emit_intent(books, index, "payment_intent.succeeded");
            }
            CaptureMethod::Manual => {
                intent.public.status = PaymentStatus::RequiresCapture;
                intent.public.amount_capturable_minor = intent.public.amount_minor;
                self.emit_intent(books, index, "payment_intent.amount_capturable_updated");
            }
        }
    }

    /// A pending refund settles at the bank: it succeeds or fails.
    pub fn settle_refund(&self, which: usize, succeeds: bool) {
        let mut books = self.books();
        let pending: Vec<usize> = (0..books.refunds.len())
            .filter(|&i| books.refunds[i].status == RefundStatus::Pending)
            .collect();
        let Some(&index) = pending.get(which % pending.len().max(1)) else {
            return;
        };
        books.refunds[index].status = if succeeds {
            RefundStatus::Succeeded
        } else {
            RefundStatus::Failed
        };
        self.emit_refund(&mut books, index);
    }

    fn intent_index(books: &Books, id: &str) -> ProviderResult<usize> {
        books
            .intents
            .iter()
            .position(|intent| intent.public.id == id)
            .ok_or_else(|| missing(id))
    }
}

/// The charge behind an intent, with its refunds, as `charge.refunded` carries it.
fn charge_of(intent: &ProviderPaymentIntent, refunds: &[ProviderRefund]) -> ProviderCharge {
    let refunds: Vec<ProviderRefund> = refunds
        .iter()
        .filter(|refund| refund.payment_intent_id.as_deref() == Some(intent.id.as_str()))
        .cloned()
        .collect();
    ProviderCharge {
        id: intent.latest_charge.clone().unwrap_or_default(),
        payment_intent_id: Some(intent.id.clone()),
        amount_minor: intent.amount_minor,
        amount_captured_minor: intent.amount_received_minor,
        amount_refunded_minor: refunds
            .iter()
            .filter(|refund| refund.status == RefundStatus::Succeeded)
            .map(|refund| refund.amount_minor)
            .sum(),
        currency: intent.currency.clone(),
        refunds,
    }
}

#[async_trait]
impl PaymentProvider for SimProvider {
    async fn create_payment_intent(
        &self,
        request: CreatePaymentIntent,
    ) -> ProviderResult<ProviderPaymentIntent> {
        self.call(|books| {
            if let Some(&index) = books.intent_by_key.get(&request.idempotency_key) {
                return Ok(books.intents[index].public.clone());
            }
            let id = format!("pi_{:05}", books.intents.len());
            let intent = ProviderPaymentIntent {
                destination: None,
                client_secret: Some(format!("{id}_secret")),
                id,
                status: PaymentStatus::RequiresPaymentMethod,
                amount_minor: request.amount_minor,
                amount_capturable_minor: 0,
                amount_received_minor: 0,
                currency: request.currency.code().to_owned(),
                latest_charge: None,
                last_error: None,
                metadata: request.metadata.clone(),
            };
            books
                .intent_by_key
                .insert(request.idempotency_key.clone(), books.intents.len());
            books.intents.push(Intent {
                public: intent.clone(),
                capture_method: request.capture_method,
            });
            Ok(intent)
        })
        .await
    }

    // The simulation's workload pays through the embedded flow only; hosted checkout is
    // exercised against the emulator. A session asked of it is refused, as by a Stripe account
    // without Checkout.
    async fn create_checkout_session(
        &self,
        _request: CreateCheckoutSession,
    ) -> ProviderResult<ProviderCheckoutSession> {
        Err(definite(
            "checkout_unavailable",
            "the simulation does not model Checkout Sessions".into(),
        ))
    }

    async fn retrieve_checkout_session(&self, id: &str) -> ProviderResult<ProviderCheckoutSession> {
        Err(missing(id))
    }

    async fn expire_checkout_session(
        &self,
        id: &str,
        _key: &str,
    ) -> ProviderResult<ProviderCheckoutSession> {
        Err(missing(id))
    }

    async fn retrieve_payment_intent(&self, id: &str) -> ProviderResult<ProviderPaymentIntent> {
        self.call(|books| Ok(books.intents[Self::intent_index(books, id)?].public.clone()))
            .await
    }

    async fn cancel_payment_intent(
        &self,
        id: &str,
        _key: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        self.call(|books| {
            let index = Self::intent_index(books, id)?;
            let intent = &mut books.intents[index].public;
            if intent.status == PaymentStatus::Canceled {
                return Ok(intent.clone());
            }
            if intent.status.is_terminal() {
                return Err(definite(
                    "payment_intent_unexpected_state",
                    format!("cannot cancel a {} intent", intent.status),
                ));
            }
            intent.status = PaymentStatus::Canceled;
            intent.amount_capturable_minor = 0;
            let answer = intent.clone();
            self.emit_intent(books, index, "payment_intent.canceled");
            Ok(answer)
        })
        .await
    }

    async fn capture_payment_intent(
        &self,
        id: &str,
        amount: Option<i64>,
        _application_fee: Option<i64>,
        _key: &str,
    ) -> ProviderResult<ProviderPaymentIntent> {
        self.call(|books| {
            let index = Self::intent_index(books, id)?;
            let intent = &mut books.intents[index].public;
            if intent.status == PaymentStatus::Succeeded {
                // The same capture again (its key): Stripe answers with the captured intent.
                return Ok(intent.clone());
            }
            if intent.status != PaymentStatus::RequiresCapture {
                return Err(definite(
                    "payment_intent_unexpected_state",
                    format!("cannot capture a {} intent", intent.status),
                ));
            }
            let amount = amount.unwrap_or(intent.amount_capturable_minor);
            if amount < 1 || amount > intent.amount_capturable_minor {
                return Err(definite(
                    "amount_too_large",
                    format!("cannot capture {amount}"),
                ));
            }
            intent.status = PaymentStatus::Succeeded;
            intent.amount_received_minor = amount;
            intent.amount_capturable_minor = 0;
            let answer = intent.clone();
            self.emit_intent(books, index, "payment_intent.succeeded");
            Ok(answer)
        })
        .await
    }

    async fn create_refund(&self, request: CreateRefund) -> ProviderResult<ProviderRefund> {
        self.call(|books| {
            if let Some(&index) = books.refund_by_key.get(&request.idempotency_key) {
                return Ok(books.refunds[index].clone());
            }
            let index = Self::intent_index(books, &request.payment_intent_id)?;
            let intent = &books.intents[index].public;
            if intent.status != PaymentStatus::Succeeded {
                return Err(definite(
                    "charge_not_captured",
                    format!("{} has no captured charge", intent.id),
                ));
            }
            let held: i64 = books
                .refunds
                .iter()
                .filter(|refund| refund.payment_intent_id.as_deref() == Some(intent.id.as_str()))
                .filter(|refund| refund.status != RefundStatus::Failed)
                .map(|refund| refund.amount_minor)
                .sum();
            if request.amount_minor > intent.amount_received_minor - held {
                let what = format!(
                    "{} asked {} of {} with {held} refunded",
                    request.idempotency_key, request.amount_minor, intent.amount_received_minor
                );
                books.over_refunds.push(what.clone());
                return Err(definite("charge_already_refunded", what));
            }
            let refund = ProviderRefund {
                id: format!("re_{:05}", books.refunds.len()),
                payment_intent_id: Some(intent.id.clone()),
                amount_minor: request.amount_minor,
                currency: intent.currency.clone(),
                status: RefundStatus::Pending,
                metadata: request.metadata.clone(),
            };
            books
                .refund_by_key
                .insert(request.idempotency_key.clone(), books.refunds.len());
            books.refunds.push(refund.clone());
            self.emit(
                books,
                "refund.created",
                ProviderEventObject::Refund(refund.clone()),
            );
            Ok(refund)
        })
        .await
    }

    async fn retrieve_refund(&self, id: &str) -> ProviderResult<ProviderRefund> {
        self.call(|books| {
            books
                .refunds
                .iter()
                .find(|refund| refund.id == id)
                .cloned()
                .ok_or_else(|| missing(id))
        })
        .await
    }

    async fn list_refunds(&self, payment_intent_id: &str) -> ProviderResult<Vec<ProviderRefund>> {
        self.call(|books| {
            Ok(books
                .refunds
                .iter()
                .rev()
                .filter(|refund| refund.payment_intent_id.as_deref() == Some(payment_intent_id))
                .take(100)
                .cloned()
                .collect())
        })
        .await
    }

    async fn list_events(
        &self,
        created_gte_secs: i64,
        starting_after: Option<&str>,
        limit: u32,
    ) -> ProviderResult<EventPage> {
        self.call(|books| {
            let newest_first = books
                .events
                .iter()
                .rev()
                .filter(|event| event.created_secs >= created_gte_secs);
            let after: Vec<&ProviderEvent> = match starting_after {
                Some(cursor) => newest_first
                    .skip_while(|e| e.id != cursor)
                    .skip(1)
                    .collect(),
                None => newest_first.collect(),
            };
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            Ok(EventPage {
                has_more: after.len() > limit,
                events: after
                    .into_iter()
                    .take(limit)
                    .map(|event| ProviderEventSummary {
                        id: event.id.clone(),
                        event_type: event.event_type.clone(),
                        created_secs: event.created_secs,
                        // What the memory verifier reads back: the event's id.
                        payload: event.id.clone(),
                    })
                    .collect(),
            })
        })
        .await
    }
}
