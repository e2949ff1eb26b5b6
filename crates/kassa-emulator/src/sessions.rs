//! Checkout Sessions (`mode=payment`): created from `line_items[][price_data]`, paid on the
//! hosted page (or through the control API, as a customer would), completed, expired. A session
//! gets its PaymentIntent when the customer first pays, as at Stripe; the intent then moves by
//! the same operations as any other, and the session follows it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::currency::check_amount;
use crate::objects::{self, NewSession};
use crate::world::{Outcome, Refusal, World, invalid, merge, missing};

/// A session may expire no sooner than this after its creation, as at Stripe.
pub const SESSION_EXPIRY_MIN_SECS: i64 = 30 * 60;
/// … and no later than this, which is also the default.
pub const SESSION_EXPIRY_MAX_SECS: i64 = 24 * 3600;
/// The test payment method that settles later (a bank transfer that clears)…
pub const DELAYED_SETTLES_METHOD: &str = "pm_bank_transfer_settles";
/// … and the one that fails later.
pub const DELAYED_FAILS_METHOD: &str = "pm_bank_transfer_fails";
/// How long a delayed payment stays `processing`.
pub const DELAYED_PAYMENT_DELAY: Duration = Duration::from_millis(500);
/// Most line items a session takes, as at Stripe.
const LINE_ITEMS_MAX: usize = 100;

/// What Stripe keeps about a session beyond the object it returns.
pub struct SessionDetails {
    pub line_items: Vec<Value>,
    /// `mode=subscription`: the price's interval (`month`, `year`) and the metadata the
    /// subscription is created with (`subscription_data[metadata]`).
    pub recurring: Option<(String, Value)>,
    /// `payment_intent_data[capture_method]`.
    pub capture_method: String,
    /// `payment_intent_data[metadata]`: the metadata its PaymentIntent is created with.
    pub intent_metadata: Value,
    /// `payment_intent_data[transfer_group]`.
    pub transfer_group: Option<String>,
}

/// A delayed payment waiting to settle.
pub struct DelayedPayment {
    pub intent_id: String,
    pub due: Instant,
    pub settles: bool,
}

type Form = BTreeMap<String, String>;

fn missing_session(id: &str) -> Refusal {
    missing("checkout.session", id)
}

/// `prefix[key]=value` fields as a JSON object.
fn bracketed(form: &Form, prefix: &str) -> Value {
    let map = form
        .iter()
        .filter_map(|(key, value)| {
            let name = key
                .strip_prefix(prefix)?
                .strip_prefix('[')?
                .strip_suffix(']')?;
            Some((name.to_owned(), json!(value)))
        })
        .collect();
    Value::Object(map)
}

fn required<'a>(form: &'a Form, name: &str) -> Result<&'a String, Refusal> {
    form.get(name).ok_or_else(|| {
        invalid(
            "parameter_missing",
            &format!("Missing required param: {name}."),
            Some(name),
        )
    })
}

fn integer(form: &Form, name: &str) -> Result<i64, Refusal> {
    required(form, name)?
        .parse()
        .map_err(|_| invalid("parameter_invalid", "Invalid integer.", Some(name)))
}

impl World {
    pub fn create_session(&mut self, form: &Form) -> Outcome {
        let mode = match required(form, "mode")?.as_str() {
            "payment" => "payment",
            "subscription" => "subscription",
            _ => {
                return Err(invalid(
                    "parameter_invalid",
                    "The emulator supports mode=payment and mode=subscription.",
                    Some("mode"),
                ));
            }
        };
        let recurring = match (
            mode,
            form.get("line_items[0][price_data][recurring][interval]"),
        ) {
            ("payment", None) => None,
            ("subscription", Some(interval)) if interval == "month" || interval == "year" => {
                if form.contains_key("line_items[1][quantity]") {
                    return Err(invalid(
                        "parameter_invalid",
                        "The emulator takes one recurring price per subscription.",
                        Some("line_items"),
                    ));
                }
                Some((
                    interval.clone(),
                    bracketed(form, "subscription_data[metadata]"),
                ))
            }
            _ => {
                return Err(invalid(
                    "parameter_invalid",
                    "mode=subscription needs one line with price_data[recurring][interval] month or year; mode=payment none.",
                    Some("line_items[0][price_data][recurring][interval]"),
                ));
            }
        };
        if let Some(customer) = form.get("customer")
            && !self.customers.contains_key(customer)
        {
            return Err(invalid(
                "resource_missing",
                &format!("No such customer: '{customer}'"),
                Some("customer"),
            ));
        }
        let success_url = required(form, "success_url")?.clone();
        let now = self.now();
        let expires_at = match form.get("expires_at") {
            None => now + SESSION_EXPIRY_MAX_SECS,
            Some(_) => {
                let asked = integer(form, "expires_at")?;
                // Stripe's test clocks move billing objects, never Checkout Sessions: a caller on
                // the wall clock (a sandbox after `clock/advance`) asks relative to real time, so
                // its expiry is carried into emulated time by the same offset.
                let real_relative = asked + self.clock_offset_secs;
                if asked < now + SESSION_EXPIRY_MIN_SECS
                    && (now + SESSION_EXPIRY_MIN_SECS..=now + SESSION_EXPIRY_MAX_SECS)
                        .contains(&real_relative)
                {
                    real_relative
                } else {
                    asked
                }
            }
        };
        if expires_at < now + SESSION_EXPIRY_MIN_SECS {
            return Err(invalid(
                "parameter_invalid",
                "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                Some("expires_at"),
            ));
        }
        if expires_at > now + SESSION_EXPIRY_MAX_SECS {
            return Err(invalid(
                "parameter_invalid",
                "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                Some("expires_at"),
            ));
        }
        let capture_method = match form
            .get("payment_intent_data[capture_method]")
            .map(String::as_str)
        {
            None | Some("automatic") | Some("automatic_async") => "automatic",
            Some("manual") => "manual",
            Some(_) => {
                return Err(invalid(
                    "parameter_invalid",
                    "Invalid capture_method.",
                    Some("payment_intent_data[capture_method]"),
                ));
            }
        };
        let (line_items, currency, amount_total) = self.line_items(form)?;
        let id = self.new_id("cs_test");
        let session = objects::checkout_session(NewSession {
            id: &id,
            mode,
            customer: form.get("customer").map(String::as_str),
            url: format!("{}/checkout/{id}", self.base_url),
            amount_total,
            currency: &currency,
            success_url: &success_url,
            cancel_url: form.get("cancel_url").map(String::as_str),
            client_reference_id: form.get("client_reference_id").map(String::as_str),
            customer_email: form.get("customer_email").map(String::as_str),
            metadata: bracketed(form, "metadata"),
            expires_at,
            created: now,
        });
        self.session_details.insert(
            id.clone(),
            SessionDetails {
                line_items,
                recurring,
                capture_method: capture_method.to_owned(),
                intent_metadata: bracketed(form, "payment_intent_data[metadata]"),
                transfer_group: form.get("payment_intent_data[transfer_group]").cloned(),
            },
        );
        self.sessions.insert(id.clone(), session.clone());
        self.session_order.push(id);
        Ok(session)
    }

    /// `line_items[i][price_data][…]` and `line_items[i][quantity]`, in one currency; the
    /// items, the currency and the total.
    fn line_items(&mut self, form: &Form) -> Result<(Vec<Value>, String, i64), Refusal> {
        let mut items = Vec::new();
        let mut currency: Option<String> = None;
        let mut total: i64 = 0;
        for index in 0.. {
            let field = |name: &str| format!("line_items[{index}]{name}");
            if !form.keys().any(|key| key.starts_with(&field(""))) {
                break;
            }
            if index >= LINE_ITEMS_MAX {
                return Err(invalid(
                    "parameter_invalid",
                    "A Checkout Session takes at most 100 line items.",
                    Some("line_items"),
                ));
            }
            if form.contains_key(&field("[price]")) {
                return Err(invalid(
                    "parameter_invalid",
                    "The emulator takes price_data only, not saved prices.",
                    Some(&field("[price]")),
                ));
            }
            let line_currency =
                required(form, &field("[price_data][currency]"))?.to_ascii_lowercase();
            let unit_amount = integer(form, &field("[price_data][unit_amount]"))?;
            let quantity = integer(form, &field("[quantity]"))?;
            let name = required(form, &field("[price_data][product_data][name]"))?.clone();
            if unit_amount < 0 || quantity < 1 {
                return Err(invalid(
                    "parameter_invalid",
                    "unit_amount must be zero or more and quantity at least 1.",
                    Some(&field("")),
                ));
            }
            if currency.as_ref().is_some_and(|c| *c != line_currency) {
                return Err(invalid(
                    "parameter_invalid",
                    "All line items must have the same currency.",
                    Some(&field("[price_data][currency]")),
                ));
            }
            let amount = unit_amount.checked_mul(quantity).ok_or_else(|| {
                invalid("parameter_invalid", "Amount too large.", Some(&field("")))
            })?;
            total = total.checked_add(amount).ok_or_else(|| {
                invalid("parameter_invalid", "Amount too large.", Some("line_items"))
            })?;
            let id = self.new_id("li");
            items.push(objects::line_item(
                &id,
                &name,
                unit_amount,
                quantity,
                &line_currency,
            ));
            currency = Some(line_currency);
        }
        let currency = currency.ok_or_else(|| {
            invalid(
                "parameter_missing",
                "Missing required param: line_items.",
                Some("line_items"),
            )
        })?;
        check_amount(&currency, total)
            .map_err(|(code, message)| invalid(code, &message, Some("line_items")))?;
        Ok((items, currency, total))
    }

    pub fn session(&self, id: &str) -> Outcome {
        self.sessions
            .get(id)
            .cloned()
            .ok_or_else(|| missing_session(id))
    }

    pub fn session_line_items(&self, id: &str) -> Result<Vec<Value>, Refusal> {
        self.session_details
            .get(id)
            .map(|details| details.line_items.clone())
            .ok_or_else(|| missing_session(id))
    }

    pub(crate) fn set_session(&mut self, id: &str, changes: Value) -> Value {
        merge(&mut self.sessions, id, changes)
    }

    /// An open session that is past its `expires_at` expires now, whoever asks first.
    fn open_session(&mut self, id: &str) -> Result<Value, Refusal> {
        let session = self.session(id)?;
        if session["status"] == "open" && session["expires_at"].as_i64().unwrap_or(0) <= self.now()
        {
            self.expire_session(id)?;
        }
        let session = self.session(id)?;
        if session["status"] != "open" {
            let status = session["status"].as_str().unwrap_or_default();
            return Err(invalid(
                "checkout_session_not_open",
                &format!("This Checkout Session is {status}; it can no longer be paid."),
                None,
            ));
        }
        Ok(session)
    }

    /// The customer pays on the hosted page with a test payment method: the session's
    /// PaymentIntent is created on the first attempt and confirmed. A decline leaves the session
    /// open for another try; 3-D Secure leaves it open until the intent is authenticated.
    pub fn pay_session(&mut self, id: &str, payment_method: &str) -> Outcome {
        let session = self.open_session(id)?;
        if session["mode"] == "subscription" {
            return self.subscribe(id, payment_method);
        }
        let intent_id = match session["payment_intent"].as_str() {
            Some(intent_id) => intent_id.to_owned(),
            None => {
                let details = self
                    .session_details
                    .get(id)
                    .ok_or_else(|| missing_session(id))?;
                let mut form = Form::from([
                    ("amount".into(), session["amount_total"].to_string()),
                    (
                        "currency".into(),
                        session["currency"].as_str().unwrap_or_default().to_owned(),
                    ),
                    ("capture_method".into(), details.capture_method.clone()),
                ]);
                if let Some(group) = &details.transfer_group {
                    form.insert("transfer_group".into(), group.clone());
                }
                let metadata = details.intent_metadata.clone();
                let intent = self.create_intent(&form, metadata)?;
                let intent_id = intent["id"].as_str().unwrap_or_default().to_owned();
                self.set_session(id, json!({"payment_intent": intent_id}));
                self.session_of_intent
                    .insert(intent_id.clone(), id.to_owned());
                intent_id
            }
        };
        self.confirm(&intent_id, Some(payment_method))?;
        self.session(id)
    }

    /// Called whenever a PaymentIntent is authorized or starts processing: its open session, if
    /// it has one, is complete. Paid when the money was taken, unpaid while it is authorized
    /// only or still settling.
    pub fn complete_session_of(&mut self, intent: &Value) {
        let intent_id = intent["id"].as_str().unwrap_or_default();
        let Some(session_id) = self.session_of_intent.get(intent_id).cloned() else {
            return;
        };
        if self
            .sessions
            .get(&session_id)
            .is_none_or(|s| s["status"] != "open")
        {
            return;
        }
        let payment_status = if intent["status"] == "succeeded" {
            "paid"
        } else {
            "unpaid"
        };
        let session = self.set_session(
            &session_id,
            json!({"status": "complete", "payment_status": payment_status}),
        );
        self.emit("checkout.session.completed", &session, None);
    }

    /// `POST /v1/checkout/sessions/{id}/expire`, or the session's time ran out. Its
    /// PaymentIntent, if one was started and can still be canceled, is canceled.
    pub fn expire_session(&mut self, id: &str) -> Outcome {
        let session = self.session(id)?;
        if session["status"] != "open" {
            return Err(invalid(
                "checkout_session_not_open",
                "Only Checkout Sessions with a status of open can be expired.",
                None,
            ));
        }
        if let Some(intent_id) = session["payment_intent"].as_str() {
            // A canceled or finished intent stays as it is.
            let _ = self.cancel(intent_id, Some("abandoned"));
        }
        let session = self.set_session(id, json!({"status": "expired"}));
        self.emit("checkout.session.expired", &session, None);
        Ok(session)
    }

    /// Expires every open session whose `expires_at` has passed (emulated time).
    pub fn expire_due_sessions(&mut self) {
        let now = self.now();
        let due: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s["status"] == "open" && s["expires_at"].as_i64().unwrap_or(0) <= now)
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        for id in due {
            let _ = self.expire_session(&id);
        }
    }

    /// Settles the delayed payments whose time has come: the intent succeeds (or fails), and
    /// its session, complete but unpaid, gets Stripe's `async_payment_succeeded` (or `_failed`).
    pub fn settle_delayed_payments(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed_payments)
            .into_iter()
            .partition(|payment| payment.due <= now);
        self.delayed_payments = later;
        for payment in due {
            if self
                .intents
                .get(&payment.intent_id)
                .is_none_or(|intent| intent["status"] != "processing")
            {
                continue;
            }
            let kind = if payment.settles {
                self.authorize(&payment.intent_id);
                "checkout.session.async_payment_succeeded"
            } else {
                let _ = self.decline(
                    &payment.intent_id,
                    "payment_failed",
                    "insufficient_funds",
                    "The bank transfer did not arrive.",
                );
                "checkout.session.async_payment_failed"
            };
            if let Some(session_id) = self.session_of_intent.get(&payment.intent_id).cloned() {
                let changes = if payment.settles {
                    json!({"payment_status": "paid"})
                } else {
                    json!({})
                };
                let session = self.set_session(&session_id, changes);
                self.emit(kind, &session, None);
            }
        }
    }
}
