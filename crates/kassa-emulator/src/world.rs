//! The emulator's state and every operation on it. Operations are synchronous and run under one
//! lock, so each is atomic like a Stripe API call; nothing here awaits.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::EmulatorConfig;
use crate::currency::check_amount;
use crate::objects::{self, NewIntent};
use crate::sessions::{
    DELAYED_FAILS_METHOD, DELAYED_PAYMENT_DELAY, DELAYED_SETTLES_METHOD, DelayedPayment,
    SessionDetails,
};

/// An uncaptured authorization lapses after this long, as at Stripe.
pub const AUTHORIZATION_TTL_SECS: i64 = 7 * 86_400;
/// Idempotency keys are forgotten after this long, as at Stripe.
pub const IDEMPOTENCY_TTL_SECS: i64 = 86_400;
/// Most events kept for `GET /v1/events`; the oldest are dropped first. Kassa's reconciliation
/// reads back minutes, not days; each event holds a copy of its object, so a long-running
/// sandbox would otherwise grow by megabytes a minute under load.
pub const EVENTS_KEPT_MAX: usize = 10_000;
/// Most PaymentIntents kept, with their charges, refunds and disputes; past it the oldest
/// are forgotten in batches (a long-running sandbox; Kassa asks about recent payments).
pub const INTENTS_KEPT_MAX: usize = 5_000;
const INTENTS_FORGOTTEN_AT_ONCE: usize = 500;
/// Above this many remembered idempotency keys, the ones older than Stripe's 24 hours are
/// forgotten at the next new key (a sandbox's emulated time may never be advanced).
const IDEMPOTENCY_KEYS_SWEEP_AT: usize = 10_000;

/// An API error: HTTP status and Stripe's error body.
pub type Refusal = (u16, Value);
pub type Outcome = Result<Value, Refusal>;

/// The test payment method whose refunds fail after succeeding.
pub const REFUND_FAIL_METHOD: &str = "pm_card_refundFail";
/// How long after it succeeded such a refund fails.
pub const REFUND_FAILURE_DELAY: std::time::Duration = std::time::Duration::from_millis(300);

pub fn invalid(code: &str, message: &str, param: Option<&str>) -> Refusal {
    (
        400,
        objects::error("invalid_request_error", Some(code), message, param),
    )
}

pub(crate) fn missing(kind: &str, id: &str) -> Refusal {
    (
        404,
        objects::error(
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such {kind}: '{id}'"),
            Some("id"),
        ),
    )
}

/// A stored idempotent answer (None while the first request is still running).
pub struct IdempotentEntry {
    pub request_hash: String,
    pub answer: Option<(u16, Value)>,
    pub created: i64,
}

/// An injected answer for a matching API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFault {
    Status(u16),
    /// Hold the request this long, then answer normally; 0 holds it until shutdown.
    Hang(u64),
    /// Do the operation, then never answer.
    LoseResponse,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookFaults {
    /// Send every event this many times (1 = normal).
    pub copies: u32,
    /// Deliver each batch of queued events newest first.
    pub reorder: bool,
    pub delay_ms: u64,
    /// Drop the first attempt of every event; it is redelivered by the retry.
    pub drop_first: bool,
    /// Drop every delivery until cleared (the events stay listed in `GET /v1/events`), as a
    /// webhook endpoint that was down for a while misses them.
    pub drop: bool,
}

pub struct World {
    pub clock_offset_secs: i64,
    rng: StdRng,
    pub intents: BTreeMap<String, Value>,
    pub charges: BTreeMap<String, Value>,
    pub refunds: BTreeMap<String, Value>,
    pub disputes: BTreeMap<String, Value>,
    /// Creation order of intents and refunds, for lists.
    pub intent_order: Vec<String>,
    pub refund_order: Vec<String>,
    /// Refunds of `pm_card_refundFail` payments and when they fail, as Stripe's test card does:
    /// the refund succeeds, then fails a moment later.
    pub refund_failures: Vec<(String, std::time::Instant)>,
    pub sessions: BTreeMap<String, Value>,
    pub customers: BTreeMap<String, Value>,
    /// Connected accounts (Connect), by id.
    pub accounts: BTreeMap<String, Value>,
    /// Transfers taken back from connected accounts by destination charges' refunds.
    pub transfer_reversals: BTreeMap<String, Value>,
    /// Transfers to connected accounts (separate charges and transfers), by id.
    pub transfers: BTreeMap<String, Value>,
    pub subscriptions: BTreeMap<String, Value>,
    pub invoices: BTreeMap<String, Value>,
    pub session_order: Vec<String>,
    pub session_details: BTreeMap<String, SessionDetails>,
    /// The session each session-made PaymentIntent belongs to.
    pub session_of_intent: HashMap<String, String>,
    pub delayed_payments: Vec<DelayedPayment>,
    /// The emulator's own address, for the hosted pages' URLs.
    pub base_url: String,
    pub events: VecDeque<Value>,
    pub idempotency: HashMap<(String, String), IdempotentEntry>,
    /// How many remembered keys make the next sweep of old ones.
    keys_sweep_at: usize,
    pub api_faults: Vec<(String, VecDeque<ApiFault>)>,
    /// Calls of the Stripe API received, by endpoint (`POST /v1/payment_intents/*/capture`),
    /// faulted or not: `GET /_emulator/requests`.
    pub requests: BTreeMap<String, u64>,
    pub webhook_faults: WebhookFaults,
    pub endpoints: Vec<String>,
    pub deliveries: Vec<Value>,
    /// Events waiting for delivery, oldest first. Never truncated: under load the deliverer falls
    /// behind and catches up, it does not drop.
    pub outbound: VecDeque<Value>,
    /// Wakes the deliverer when `outbound` grows.
    pub outbound_ready: Arc<Notify>,
}

impl World {
    pub fn new(config: &EmulatorConfig) -> World {
        World {
            clock_offset_secs: 0,
            rng: StdRng::seed_from_u64(config.seed),
            intents: BTreeMap::new(),
            charges: BTreeMap::new(),
            refunds: BTreeMap::new(),
            disputes: BTreeMap::new(),
            intent_order: Vec::new(),
            refund_order: Vec::new(),
            refund_failures: Vec::new(),
            sessions: BTreeMap::new(),
            customers: BTreeMap::new(),
            accounts: BTreeMap::new(),
            transfer_reversals: BTreeMap::new(),
            transfers: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            invoices: BTreeMap::new(),
            session_order: Vec::new(),
            session_details: BTreeMap::new(),
            session_of_intent: HashMap::new(),
            delayed_payments: Vec::new(),
            base_url: String::new(),
            events: VecDeque::new(),
            idempotency: HashMap::new(),
            keys_sweep_at: IDEMPOTENCY_KEYS_SWEEP_AT,
            api_faults: Vec::new(),
            requests: BTreeMap::new(),
            webhook_faults: WebhookFaults {
                copies: 1,
                ..WebhookFaults::default()
            },
            endpoints: config.webhook_endpoints.clone(),
            deliveries: Vec::new(),
            outbound: VecDeque::new(),
            outbound_ready: Arc::new(Notify::new()),
        }
    }

    pub fn now(&self) -> i64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        real + self.clock_offset_secs
    }

    pub fn new_id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let suffix: String = (0..24)
            .map(|_| char::from(ALPHABET[self.rng.random_range(0..ALPHABET.len())]))
            .collect();
        format!("{prefix}_{suffix}")
    }

    /// Records an event and queues it for delivery (never dropped).
    pub fn emit(&mut self, kind: &str, object: &Value, request: Option<(&str, Option<&str>)>) {
        let id = self.new_id("evt");
        let event = objects::event(&id, kind, object, self.now(), request);
        if self.events.len() >= EVENTS_KEPT_MAX {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        self.outbound.push_back(event);
        self.outbound_ready.notify_one();
    }

    pub fn create_intent(&mut self, form: &BTreeMap<String, String>, metadata: Value) -> Outcome {
        let amount: i64 = form
            .get("amount")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                invalid(
                    "parameter_missing",
                    "Missing required param: amount.",
                    Some("amount"),
                )
            })?;
        let currency = form
            .get("currency")
            .map(|c| c.to_ascii_lowercase())
            .ok_or_else(|| {
                invalid(
                    "parameter_missing",
                    "Missing required param: currency.",
                    Some("currency"),
                )
            })?;
        check_amount(&currency, amount)
            .map_err(|(code, message)| invalid(code, &message, Some("amount")))?;
        let capture_method = match form.get("capture_method").map(String::as_str) {
            None | Some("automatic") | Some("automatic_async") => "automatic",
            Some("manual") => "manual",
            Some(_) => {
                return Err(invalid(
                    "parameter_invalid",
                    "Invalid capture_method.",
                    Some("capture_method"),
                ));
            }
        };
        let destination = form.get("transfer_data[destination]").cloned();
        if let Some(destination) = &destination {
            self.check_destination(destination, "transfer_data[destination]")?;
        }
        let application_fee: Option<i64> = match form.get("application_fee_amount") {
            None => None,
            Some(fee) => match fee.parse::<i64>() {
                Ok(fee) if (0..=amount).contains(&fee) && destination.is_some() => Some(fee),
                _ => {
                    return Err(invalid(
                        "parameter_invalid",
                        "application_fee_amount must be between 0 and the amount, with transfer_data[destination].",
                        Some("application_fee_amount"),
                    ));
                }
            },
        };
        let id = self.new_id("pi");
        let secret = self.new_id("s");
        let intent = objects::payment_intent(NewIntent {
            id: &id,
            secret: secret.trim_start_matches("s_"),
            amount,
            currency: &currency,
            capture_method,
            metadata,
            description: form.get("description").cloned(),
            created: self.now(),
        });
        let mut intent = intent;
        if let Some(destination) = destination {
            intent["transfer_data"] = json!({"destination": destination});
            intent["application_fee_amount"] = json!(application_fee);
        }
        if let Some(group) = form.get("transfer_group") {
            intent["transfer_group"] = json!(group);
        }
        self.intents.insert(id.clone(), intent.clone());
        self.intent_order.push(id);
        self.forget_oldest_payments();
        self.emit("payment_intent.created", &intent, None);
        if form.get("confirm").map(String::as_str) == Some("true") {
            let id = intent["id"].as_str().unwrap_or_default().to_owned();
            return self.confirm(&id, form.get("payment_method").map(String::as_str));
        }
        Ok(intent)
    }

    pub fn intent(&self, id: &str) -> Outcome {
        self.intents
            .get(id)
            .cloned()
            .ok_or_else(|| missing("payment_intent", id))
    }

    fn status_of(&self, id: &str) -> Result<String, Refusal> {
        Ok(self.intent(id)?["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    fn set(&mut self, id: &str, changes: Value) -> Value {
        merge(&mut self.intents, id, changes)
    }

    pub fn update_intent(
        &mut self,
        id: &str,
        form: &BTreeMap<String, String>,
        metadata: Option<Value>,
    ) -> Outcome {
        let status = self.status_of(id)?;
        if !matches!(
            status.as_str(),
            "requires_payment_method" | "requires_confirmation" | "requires_action"
        ) {
            return Err(unexpected_state(&status, "update"));
        }
        let mut changes = json!({});
        if let Some(amount) = form.get("amount") {
            let amount: i64 = amount
                .parse()
                .map_err(|_| invalid("parameter_invalid", "Invalid integer.", Some("amount")))?;
            let currency = self.intent(id)?["currency"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            check_amount(&currency, amount)
                .map_err(|(code, message)| invalid(code, &message, Some("amount")))?;
            changes["amount"] = json!(amount);
        }
        if let Some(description) = form.get("description") {
            changes["description"] = json!(description);
        }
        if let Some(metadata) = metadata {
            let mut merged = self.intent(id)?["metadata"].clone();
            if let (Value::Object(merged), Value::Object(new)) = (&mut merged, metadata) {
                merged.extend(new);
            }
            changes["metadata"] = merged;
        }
        Ok(self.set(id, changes))
    }

    pub fn confirm(&mut self, id: &str, payment_method: Option<&str>) -> Outcome {
        let status = self.status_of(id)?;
        if !matches!(
            status.as_str(),
            "requires_payment_method" | "requires_confirmation"
        ) {
            return Err(unexpected_state(&status, "confirm"));
        }
        let method = payment_method.ok_or_else(|| {
            invalid(
                "parameter_missing",
                "You must provide a payment_method to confirm.",
                Some("payment_method"),
            )
        })?;
        self.set(
            id,
            json!({"payment_method": method, "last_payment_error": null}),
        );
        match method {
            "pm_card_chargeDeclined" => Err(self.decline(
                id,
                "card_declined",
                "generic_decline",
                "Your card was declined.",
            )),
            "pm_card_authenticationRequired" => {
                let intent = self.set(
                    id,
                    json!({"status": "requires_action", "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}}),
                );
                self.emit("payment_intent.requires_action", &intent, None);
                Ok(intent)
            }
            DELAYED_SETTLES_METHOD | DELAYED_FAILS_METHOD => {
                let intent = self.set(id, json!({"status": "processing"}));
                self.delayed_payments.push(DelayedPayment {
                    intent_id: id.to_owned(),
                    due: std::time::Instant::now() + DELAYED_PAYMENT_DELAY,
                    settles: method == DELAYED_SETTLES_METHOD,
                });
                self.emit("payment_intent.processing", &intent, None);
                self.complete_session_of(&intent);
                Ok(intent)
            }
            m if m.starts_with("pm_card_") => Ok(self.authorize(id)),
            other => Err(invalid(
                "resource_missing",
                &format!("No such PaymentMethod: '{other}'"),
                Some("payment_method"),
            )),
        }
    }

    /// The simulated 3-D Secure step finished.
    pub fn authenticate(&mut self, id: &str, succeed: bool) -> Outcome {
        let status = self.status_of(id)?;
        if status != "requires_action" {
            return Err(unexpected_state(&status, "authenticate"));
        }
        self.set(id, json!({"next_action": null}));
        if succeed {
            Ok(self.authorize(id))
        } else {
            let refusal = self.decline(
                id,
                "payment_intent_authentication_failure",
                "authentication_required",
                "Authentication failed.",
            );
            Ok(refusal.1["error"]["payment_intent"].clone())
        }
    }

    pub(crate) fn decline(
        &mut self,
        id: &str,
        code: &str,
        decline_code: &str,
        message: &str,
    ) -> Refusal {
        // As at Stripe, a declined attempt is a charge of its own, failed, and the intent's
        // latest charge and error point at it.
        let now = self.now();
        let charge_id = self.new_id("ch");
        let mut charge = objects::charge(
            &charge_id,
            &self.intents.get(id).cloned().unwrap_or(Value::Null),
            false,
            now,
        );
        charge["status"] = json!("failed");
        charge["paid"] = json!(false);
        charge["failure_code"] = json!(code);
        charge["failure_message"] = json!(message);
        charge["outcome"] = json!({"network_status": "declined_by_network", "type": "issuer_declined", "reason": decline_code, "risk_level": "normal"});
        self.charges.insert(charge_id.clone(), charge);
        let error = json!({"type": "card_error", "code": code, "decline_code": decline_code, "message": message, "charge": charge_id});
        let intent = self.set(id, json!({"status": "requires_payment_method", "last_payment_error": error, "latest_charge": charge_id, "next_action": null}));
        self.emit("payment_intent.payment_failed", &intent, None);
        let mut body = objects::error("card_error", Some(code), message, None);
        body["error"]["decline_code"] = json!(decline_code);
        body["error"]["payment_intent"] = intent;
        (402, body)
    }

    /// A successful card: authorized (manual capture) or captured (automatic).
    pub(crate) fn authorize(&mut self, id: &str) -> Value {
        let now = self.now();
        let intent = self.intents.get(id).cloned().unwrap_or(Value::Null);
        let manual = intent["capture_method"] == "manual";
        let charge_id = self.new_id("ch");
        let charge = objects::charge(&charge_id, &intent, !manual, now);
        self.charges.insert(charge_id.clone(), charge.clone());
        let amount = intent["amount"].as_i64().unwrap_or(0);
        let changes = if manual {
            json!({"status": "requires_capture", "amount_capturable": amount, "latest_charge": charge_id})
        } else {
            json!({"status": "succeeded", "amount_received": amount, "latest_charge": charge_id})
        };
        let intent = self.set(id, changes);
        self.emit("charge.succeeded", &charge, None);
        let kind = if manual {
            "payment_intent.amount_capturable_updated"
        } else {
            "payment_intent.succeeded"
        };
        self.emit(kind, &intent, None);
        self.complete_session_of(&intent);
        intent
    }

    /// `application_fee`: a destination charge's fee on what is captured, replacing the one it
    /// was created with.
    pub fn capture(
        &mut self,
        id: &str,
        amount_to_capture: Option<i64>,
        application_fee: Option<i64>,
    ) -> Outcome {
        let status = self.status_of(id)?;
        if status != "requires_capture" {
            return Err(unexpected_state(&status, "capture"));
        }
        let intent = self.intent(id)?;
        let capturable = intent["amount_capturable"].as_i64().unwrap_or(0);
        let amount = amount_to_capture.unwrap_or(capturable);
        if amount <= 0 || amount > capturable {
            return Err(invalid(
                "amount_too_large",
                "amount_to_capture exceeds the capturable amount.",
                Some("amount_to_capture"),
            ));
        }
        if let Some(fee) = application_fee {
            if intent["transfer_data"]["destination"].is_null() || !(0..=amount).contains(&fee) {
                return Err(invalid(
                    "parameter_invalid",
                    "application_fee_amount must be between 0 and the amount captured, on a destination charge.",
                    Some("application_fee_amount"),
                ));
            }
            self.set(id, json!({"application_fee_amount": fee}));
        }
        let charge_id = intent["latest_charge"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(charge) = self.charges.get_mut(&charge_id) {
            charge["captured"] = json!(true);
            charge["amount_captured"] = json!(amount);
        }
        let intent = self.set(
            id,
            json!({"status": "succeeded", "amount_received": amount, "amount_capturable": 0}),
        );
        if let Some(charge) = self.charges.get(&charge_id).cloned() {
            self.emit("charge.captured", &charge, None);
        }
        self.emit("payment_intent.succeeded", &intent, None);
        Ok(intent)
    }

    pub fn cancel(&mut self, id: &str, reason: Option<&str>) -> Outcome {
        let status = self.status_of(id)?;
        let cancelable = [
            "requires_payment_method",
            "requires_capture",
            "requires_confirmation",
            "requires_action",
            "processing",
        ];
        if !cancelable.contains(&status.as_str()) {
            return Err(unexpected_state(&status, "cancel"));
        }
        let now = self.now();
        let intent = self.set(
            id,
            json!({"status": "canceled", "canceled_at": now, "cancellation_reason": reason, "amount_capturable": 0, "next_action": null}),
        );
        self.emit("payment_intent.canceled", &intent, None);
        Ok(intent)
    }

    pub fn create_refund(&mut self, form: &BTreeMap<String, String>, metadata: Value) -> Outcome {
        let charge_id = match (form.get("charge"), form.get("payment_intent")) {
            (Some(charge), _) => charge.clone(),
            (None, Some(intent)) => {
                let intent = self.intent(intent)?;
                intent["latest_charge"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        invalid(
                            "charge_not_found",
                            "This PaymentIntent has no successful charge to refund.",
                            Some("payment_intent"),
                        )
                    })?
            }
            (None, None) => {
                return Err(invalid(
                    "parameter_missing",
                    "One of charge or payment_intent is required.",
                    None,
                ));
            }
        };
        let charge = self
            .charges
            .get(&charge_id)
            .cloned()
            .ok_or_else(|| missing("charge", &charge_id))?;
        let remaining = charge["amount_captured"].as_i64().unwrap_or(0)
            - charge["amount_refunded"].as_i64().unwrap_or(0);
        if remaining <= 0 {
            return Err(invalid(
                "charge_already_refunded",
                &format!("Charge {charge_id} has already been refunded."),
                None,
            ));
        }
        let amount = match form.get("amount") {
            Some(text) => text
                .parse::<i64>()
                .map_err(|_| invalid("parameter_invalid", "Invalid integer.", Some("amount")))?,
            None => remaining,
        };
        if amount <= 0 || amount > remaining {
            let message = format!(
                "Refund amount ({amount}) is greater than the unrefunded amount on the charge ({remaining})."
            );
            return Err(invalid("amount_too_large", &message, Some("amount")));
        }
        let now = self.now();
        let id = self.new_id("re");
        let mut refund = objects::refund(
            &id,
            &charge,
            amount,
            form.get("reason").cloned(),
            metadata,
            now,
        );
        if form.get("reverse_transfer").map(String::as_str) == Some("true") {
            refund["transfer_reversal"] = self.reverse_transfer(&charge, amount);
        }
        self.refunds.insert(id.clone(), refund.clone());
        self.refund_order.push(id.clone());
        if charge["payment_method"] == REFUND_FAIL_METHOD {
            let due = std::time::Instant::now() + REFUND_FAILURE_DELAY;
            self.refund_failures.push((id, due));
        }
        let charge = self.record_refund_on_charge(&charge_id, &refund, amount);
        self.emit("refund.created", &refund, None);
        self.emit("charge.refunded", &charge, None);
        Ok(refund)
    }

    fn record_refund_on_charge(&mut self, charge_id: &str, refund: &Value, amount: i64) -> Value {
        let Some(charge) = self.charges.get_mut(charge_id) else {
            return Value::Null;
        };
        let refunded = charge["amount_refunded"].as_i64().unwrap_or(0) + amount;
        charge["amount_refunded"] = json!(refunded);
        charge["refunded"] = json!(refunded >= charge["amount_captured"].as_i64().unwrap_or(0));
        if let Some(list) = charge["refunds"]["data"].as_array_mut() {
            list.insert(0, refund.clone());
        }
        charge.clone()
    }

    /// Fails the refunds of `pm_card_refundFail` payments whose time has come: the money returns
    /// to the charge, and Stripe's `refund.updated`, `refund.failed` and `charge.refund.updated`
    /// are sent.
    pub fn fail_due_refunds(&mut self, now: std::time::Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.refund_failures)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.refund_failures = later;
        for (id, _) in due {
            let Some(refund) = self.refunds.get_mut(&id) else {
                continue;
            };
            refund["status"] = json!("failed");
            refund["failure_reason"] = json!("expired_or_canceled_card");
            let refund = refund.clone();
            let amount = refund["amount"].as_i64().unwrap_or(0);
            let charge_id = refund["charge"].as_str().unwrap_or_default().to_owned();
            if let Some(charge) = self.charges.get_mut(&charge_id) {
                let refunded = charge["amount_refunded"].as_i64().unwrap_or(0) - amount;
                charge["amount_refunded"] = json!(refunded.max(0));
                charge["refunded"] = json!(false);
                if let Some(list) = charge["refunds"]["data"].as_array_mut() {
                    for entry in list.iter_mut().filter(|entry| entry["id"] == id.as_str()) {
                        *entry = refund.clone();
                    }
                }
            }
            self.emit("refund.updated", &refund, None);
            self.emit("refund.failed", &refund, None);
            self.emit("charge.refund.updated", &refund, None);
        }
    }

    pub fn refund(&self, id: &str) -> Outcome {
        self.refunds
            .get(id)
            .cloned()
            .ok_or_else(|| missing("refund", id))
    }

    pub fn open_dispute(&mut self, intent_id: &str) -> Outcome {
        let intent = self.intent(intent_id)?;
        let charge_id = intent["latest_charge"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let charge = self
            .charges
            .get(&charge_id)
            .filter(|charge| charge["captured"] == true)
            .cloned()
            .ok_or_else(|| {
                invalid(
                    "charge_not_found",
                    "Only a captured charge can be disputed.",
                    None,
                )
            })?;
        let id = self.new_id("dp");
        let dispute = objects::dispute(&id, &charge, self.now());
        self.disputes.insert(id, dispute.clone());
        if let Some(charge) = self.charges.get_mut(&charge_id) {
            charge["disputed"] = json!(true);
        }
        self.emit("charge.dispute.created", &dispute, None);
        Ok(dispute)
    }

    pub fn close_dispute(&mut self, id: &str, won: bool) -> Outcome {
        let dispute = self
            .disputes
            .get_mut(id)
            .ok_or_else(|| missing("dispute", id))?;
        dispute["status"] = json!(if won { "won" } else { "lost" });
        let dispute = dispute.clone();
        self.emit("charge.dispute.closed", &dispute, None);
        Ok(dispute)
    }

    /// Moves emulated time: uncaptured authorizations lapse, old idempotency keys are forgotten.
    pub fn advance(&mut self, seconds: i64) {
        self.clock_offset_secs += seconds;
        let now = self.now();
        let lapsed: Vec<String> = self
            .intents
            .values()
            .filter(|i| {
                i["status"] == "requires_capture"
                    && i["created"].as_i64().unwrap_or(now) + AUTHORIZATION_TTL_SECS <= now
            })
            .filter_map(|i| i["id"].as_str().map(str::to_owned))
            .collect();
        for id in lapsed {
            let _ = self.cancel(&id, Some("automatic"));
        }
        self.expire_due_sessions();
        self.renew_due_subscriptions();
        self.idempotency
            .retain(|_, entry| entry.created + IDEMPOTENCY_TTL_SECS > now);
    }

    /// Forgets the oldest settled PaymentIntents and everything that hangs off them once more
    /// than [`INTENTS_KEPT_MAX`] are kept. Only what no later call can need goes: a payment
    /// succeeded or canceled, of no marketplace (a transfer names its charge), whose Checkout
    /// Session (if any) is over. An authorization still waiting for its capture stays.
    fn forget_oldest_payments(&mut self) {
        if self.intent_order.len() <= INTENTS_KEPT_MAX + INTENTS_FORGOTTEN_AT_ONCE {
            return;
        }
        let settled = |intent: &Value| {
            matches!(intent["status"].as_str(), Some("succeeded" | "canceled"))
                && intent["transfer_group"].is_null()
                && intent["transfer_data"].is_null()
        };
        let mut forgotten = std::collections::HashSet::new();
        for id in &self.intent_order {
            if forgotten.len() == INTENTS_FORGOTTEN_AT_ONCE {
                break;
            }
            let session_open = self
                .session_of_intent
                .get(id)
                .and_then(|session| self.sessions.get(session))
                .is_some_and(|session| session["status"] == "open");
            if !session_open && self.intents.get(id).is_some_and(settled) {
                forgotten.insert(id.clone());
            }
        }
        self.intent_order.retain(|id| !forgotten.contains(id));
        let gone = |object: &Value| {
            object["payment_intent"]
                .as_str()
                .is_some_and(|intent| forgotten.contains(intent))
        };
        self.intents.retain(|id, _| !forgotten.contains(id));
        self.charges.retain(|_, charge| !gone(charge));
        self.refunds.retain(|_, refund| !gone(refund));
        self.disputes.retain(|_, dispute| !gone(dispute));
        let refunds = &self.refunds;
        self.refund_order.retain(|id| refunds.contains_key(id));
        self.session_of_intent
            .retain(|intent, _| !forgotten.contains(intent));
    }

    /// Forgets idempotency keys older than Stripe keeps them, once there are many; the next
    /// sweep waits until there are twice as many as it left, so a day of young keys is not
    /// rescanned at every new one.
    pub fn forget_old_keys(&mut self, now: i64) {
        if self.idempotency.len() >= self.keys_sweep_at.max(IDEMPOTENCY_KEYS_SWEEP_AT) {
            self.idempotency
                .retain(|_, entry| entry.created + IDEMPOTENCY_TTL_SECS > now);
            self.keys_sweep_at = self.idempotency.len().saturating_mul(2);
        }
    }

    /// The next injected fault for `method path`, if one is queued.
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<ApiFault> {
        let request = format!("{method} {path}");
        self.api_faults
            .iter_mut()
            .find(|(pattern, queue)| !queue.is_empty() && pattern_matches(pattern, &request))
            .and_then(|(_, queue)| queue.pop_front())
    }
}

/// Sets `changes`' fields on the object `id` of `objects`; the object as it is now.
pub(crate) fn merge(objects: &mut BTreeMap<String, Value>, id: &str, changes: Value) -> Value {
    let object = objects.entry(id.to_owned()).or_insert(Value::Null);
    if let (Value::Object(object), Value::Object(changes)) = (&mut *object, changes) {
        object.extend(changes);
    }
    object.clone()
}

fn unexpected_state(status: &str, action: &str) -> Refusal {
    invalid(
        "payment_intent_unexpected_state",
        &format!("You cannot {action} this PaymentIntent because it has a status of {status}."),
        None,
    )
}

/// `POST /v1/payment_intents/*/confirm` matches any one path segment at each `*`.
pub fn pattern_matches(pattern: &str, request: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let request: Vec<&str> = request.split('/').collect();
    pattern.len() == request.len()
        && pattern
            .iter()
            .zip(&request)
            .all(|(p, r)| *p == "*" || p == r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// However far delivery falls behind, no event is dropped for lack of room: the old bounded
    /// queue refused everything past 10,000.
    #[test]
    fn events_wait_for_delivery_without_limit() {
        let mut world = World::new(&EmulatorConfig::for_tests());
        let object = json!({"id": "pi_x", "object": "payment_intent"});
        for _ in 0..20_000 {
            world.emit("payment_intent.created", &object, None);
        }
        assert_eq!(world.outbound.len(), 20_000);
        // What stays listed is bounded: the newest events.
        assert_eq!(world.events.len(), EVENTS_KEPT_MAX);
    }

    /// Payment objects are bounded: the oldest intents go, with their charges.
    #[test]
    fn the_oldest_payments_are_forgotten_past_the_bound() {
        let mut world = World::new(&EmulatorConfig::for_tests());
        let mut form = BTreeMap::new();
        form.insert("amount".to_owned(), "1000".to_owned());
        form.insert("currency".to_owned(), "eur".to_owned());
        form.insert("confirm".to_owned(), "true".to_owned());
        form.insert("payment_method".to_owned(), "pm_card_visa".to_owned());
        let first = world.create_intent(&form, json!({})).expect("created");
        for _ in 0..INTENTS_KEPT_MAX + INTENTS_FORGOTTEN_AT_ONCE {
            world.create_intent(&form, json!({})).expect("created");
        }
        assert!(world.intents.len() <= INTENTS_KEPT_MAX + INTENTS_FORGOTTEN_AT_ONCE);
        let first_id = first["id"].as_str().expect("id");
        assert!(
            !world.intents.contains_key(first_id),
            "the oldest is forgotten"
        );
        assert!(
            world
                .charges
                .values()
                .all(|c| c["payment_intent"] != first_id),
            "with its charge"
        );
        assert_eq!(world.intents.len(), world.charges.len());
    }

    /// A sandbox whose emulated time never moves still forgets day-old keys, as Stripe does.
    #[test]
    fn day_old_idempotency_keys_are_forgotten_without_advancing_time() {
        let mut world = World::new(&EmulatorConfig::for_tests());
        let entry = |created| IdempotentEntry {
            request_hash: String::new(),
            answer: None,
            created,
        };
        for n in 0..IDEMPOTENCY_KEYS_SWEEP_AT {
            let created = if n % 2 == 0 { 0 } else { IDEMPOTENCY_TTL_SECS };
            world
                .idempotency
                .insert(("sk".into(), format!("key-{n}")), entry(created));
        }
        world.forget_old_keys(IDEMPOTENCY_TTL_SECS + 1);
        assert_eq!(world.idempotency.len(), IDEMPOTENCY_KEYS_SWEEP_AT / 2);
    }
}
