//! Customers, subscriptions and their invoices: a subscription is started by paying a
//! `mode=subscription` Checkout Session with a card, renews when emulated time passes its
//! period's end (paying the new invoice with the customer's card, or failing to: `past_due`),
//! and ends when canceled, at once or at its period's end. Events come in Stripe's order.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::objects::{self, NewInvoice, NewSubscription};
use crate::world::{Outcome, World, invalid, merge, missing};

type Form = BTreeMap<String, String>;

/// The end of the period that starts at `start`: a month is 30 days, a year 365, in the
/// emulator's clock.
fn period_end(start: i64, interval: &str) -> i64 {
    start
        + if interval == "year" {
            365 * 86_400
        } else {
            30 * 86_400
        }
}

impl World {
    pub fn create_customer(&mut self, form: &Form, metadata: Value) -> Outcome {
        let id = self.new_id("cus");
        let customer = objects::customer(
            &id,
            form.get("email").map(String::as_str),
            metadata,
            self.now(),
        );
        self.customers.insert(id, customer.clone());
        self.emit("customer.created", &customer, None);
        Ok(customer)
    }

    pub fn customer(&self, id: &str) -> Outcome {
        self.customers
            .get(id)
            .cloned()
            .ok_or_else(|| missing("customer", id))
    }

    pub fn subscription(&self, id: &str) -> Outcome {
        self.subscriptions
            .get(id)
            .cloned()
            .ok_or_else(|| missing("subscription", id))
    }

    pub fn invoice(&self, id: &str) -> Outcome {
        self.invoices
            .get(id)
            .cloned()
            .ok_or_else(|| missing("invoice", id))
    }

    /// The customer's card for renewals (the control API changes it, as a customer updating
    /// their card would).
    pub fn set_customer_payment_method(&mut self, id: &str, payment_method: &str) -> Outcome {
        let customer = self
            .customers
            .get_mut(id)
            .ok_or_else(|| missing("customer", id))?;
        customer["invoice_settings"]["default_payment_method"] = json!(payment_method);
        Ok(customer.clone())
    }

    /// A `mode=subscription` page paid with a card: the customer (made if the page had none),
    /// the subscription, its first invoice paid, then the session complete.
    pub(crate) fn subscribe(&mut self, session_id: &str, payment_method: &str) -> Outcome {
        if !payment_method.starts_with("pm_card_")
            || payment_method == "pm_card_authenticationRequired"
        {
            return Err(invalid(
                "parameter_invalid",
                "The emulator starts subscriptions with a card that needs no authentication.",
                Some("payment_method"),
            ));
        }
        if payment_method == "pm_card_chargeDeclined" {
            let mut body = objects::error(
                "card_error",
                Some("card_declined"),
                "Your card was declined.",
                None,
            );
            body["error"]["decline_code"] = json!("generic_decline");
            return Err((402, body));
        }
        let session = self.session(session_id)?;
        let (interval, metadata) = self
            .session_details
            .get(session_id)
            .and_then(|details| details.recurring.clone())
            .ok_or_else(|| missing("checkout.session", session_id))?;
        let line = self
            .session_line_items(session_id)?
            .first()
            .cloned()
            .unwrap_or(Value::Null);
        let customer_id = match session["customer"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                let email = session["customer_email"].as_str().map(str::to_owned);
                let form = email
                    .map(|email| Form::from([("email".to_owned(), email)]))
                    .unwrap_or_default();
                let customer = self.create_customer(&form, json!({}))?;
                customer["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        self.set_customer_payment_method(&customer_id, payment_method)?;
        let now = self.now();
        let (id, item_id) = (self.new_id("sub"), self.new_id("si"));
        let (price_id, product_id) = (self.new_id("price"), self.new_id("prod"));
        let subscription = objects::subscription(NewSubscription {
            id: &id,
            item_id: &item_id,
            price_id: &price_id,
            product_id: &product_id,
            customer: &customer_id,
            name: line["description"].as_str().unwrap_or_default(),
            unit_amount: line["price"]["unit_amount"].as_i64().unwrap_or(0),
            currency: session["currency"].as_str().unwrap_or_default(),
            interval: &interval,
            metadata,
            period: (now, period_end(now, &interval)),
            created: now,
        });
        self.subscriptions.insert(id.clone(), subscription.clone());
        self.emit("customer.subscription.created", &subscription, None);
        let invoice = self.open_invoice(&id, "subscription_create")?;
        let invoice_id = invoice["id"].as_str().unwrap_or_default().to_owned();
        self.attempt_invoice(&invoice_id)?;
        let completed = self.set_session(
            session_id,
            json!({"status": "complete", "payment_status": "paid", "customer": customer_id,
                   "subscription": id, "invoice": invoice_id}),
        );
        self.emit("checkout.session.completed", &completed, None);
        Ok(completed)
    }

    fn open_invoice(&mut self, subscription_id: &str, reason: &str) -> Outcome {
        let subscription = self.subscription(subscription_id)?;
        let customer_id = subscription["customer"].as_str().unwrap_or_default();
        let balance = self.customer(customer_id)?["balance"].as_i64().unwrap_or(0);
        let (id, line_id) = (self.new_id("in"), self.new_id("il"));
        let invoice = objects::invoice(NewInvoice {
            id: &id,
            line_id: &line_id,
            subscription: &subscription,
            billing_reason: reason,
            starting_balance: balance,
            created: self.now(),
        });
        // Finalizing applies the balance: the credit it used is gone from the customer.
        if let Some(customer) = self.customers.get_mut(customer_id) {
            customer["balance"] = invoice["ending_balance"].clone();
        }
        self.invoices.insert(id.clone(), invoice.clone());
        if let Some(subscription) = self.subscriptions.get_mut(subscription_id) {
            subscription["latest_invoice"] = json!(id);
        }
        self.emit("invoice.created", &invoice, None);
        self.emit("invoice.finalized", &invoice, None);
        Ok(invoice)
    }

    /// Charges an open invoice to its customer's card: paid (the subscription active), or failed
    /// (the subscription `past_due`).
    fn attempt_invoice(&mut self, invoice_id: &str) -> Outcome {
        let invoice = self.invoice(invoice_id)?;
        if invoice["status"] != "open" {
            return Err(invalid(
                "invoice_not_open",
                "Only an open invoice can be paid.",
                None,
            ));
        }
        let customer = self.customer(invoice["customer"].as_str().unwrap_or_default())?;
        let method = customer["invoice_settings"]["default_payment_method"]
            .as_str()
            .unwrap_or("pm_card_chargeDeclined")
            .to_owned();
        // An invoice the customer's balance (or a coupon) paid in full charges no card.
        let paid = method != "pm_card_chargeDeclined" || invoice["amount_due"] == 0;
        let attempts = invoice["attempt_count"].as_i64().unwrap_or(0) + 1;
        let now = self.now();
        let changes = if paid {
            json!({"status": "paid", "amount_paid": invoice["amount_due"], "amount_remaining": 0,
                   "attempt_count": attempts, "attempted": true,
                   "status_transitions": {"paid_at": now}})
        } else {
            json!({"attempt_count": attempts, "attempted": true})
        };
        let invoice = merge(&mut self.invoices, invoice_id, changes);
        let subscription_id = invoice["subscription"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if paid {
            self.emit("invoice.paid", &invoice, None);
            self.emit("invoice.payment_succeeded", &invoice, None);
        } else {
            self.emit("invoice.payment_failed", &invoice, None);
        }
        let status = if paid { "active" } else { "past_due" };
        let moved = self
            .subscriptions
            .get_mut(&subscription_id)
            .filter(|subscription| subscription["status"] != status)
            .map(|subscription| {
                subscription["status"] = json!(status);
                subscription.clone()
            });
        if let Some(subscription) = moved {
            self.emit("customer.subscription.updated", &subscription, None);
        }
        if paid {
            Ok(invoice)
        } else {
            let mut body = objects::error(
                "card_error",
                Some("card_declined"),
                "Your card was declined.",
                None,
            );
            body["error"]["invoice"] = invoice;
            Err((402, body))
        }
    }

    /// The customer's balance (the control API sets it, as an operator crediting a customer in
    /// Stripe's dashboard would): negative is credit the next invoices use up first.
    pub fn set_customer_balance(&mut self, id: &str, balance: i64) -> Outcome {
        let customer = self
            .customers
            .get_mut(id)
            .ok_or_else(|| missing("customer", id))?;
        customer["balance"] = json!(balance);
        let customer = customer.clone();
        self.emit("customer.updated", &customer, None);
        Ok(customer)
    }

    /// The subscription moves to a new price of `unit_amount` (the control API does it, as an
    /// operator changing the plan in Stripe's dashboard would): its next invoices bill that.
    pub fn set_subscription_price(&mut self, id: &str, unit_amount: i64) -> Outcome {
        let price_id = self.new_id("price");
        let subscription = self
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| missing("subscription", id))?;
        let price = &mut subscription["items"]["data"][0]["price"];
        price["id"] = json!(price_id);
        price["unit_amount"] = json!(unit_amount);
        let subscription = subscription.clone();
        self.emit("customer.subscription.updated", &subscription, None);
        Ok(subscription)
    }

    /// `POST /v1/invoices/{id}/pay`: tries the customer's card again.
    pub fn pay_invoice(&mut self, id: &str) -> Outcome {
        self.attempt_invoice(id)
    }

    /// `DELETE /v1/subscriptions/{id}` (now), or the end of a period after
    /// `cancel_at_period_end`.
    pub fn cancel_subscription(&mut self, id: &str) -> Outcome {
        let now = self.now();
        let subscription = self
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| missing("subscription", id))?;
        if subscription["status"] == "canceled" {
            return Err(invalid(
                "resource_missing",
                "This subscription is already canceled.",
                None,
            ));
        }
        subscription["status"] = json!("canceled");
        subscription["canceled_at"] = json!(now);
        subscription["ended_at"] = json!(now);
        let subscription = subscription.clone();
        self.emit("customer.subscription.deleted", &subscription, None);
        Ok(subscription)
    }

    /// `POST /v1/subscriptions/{id}` with `cancel_at_period_end`.
    pub fn update_subscription(&mut self, id: &str, form: &Form) -> Outcome {
        let at_period_end = match form.get("cancel_at_period_end").map(String::as_str) {
            Some("true") => true,
            Some("false") => false,
            _ => {
                return Err(invalid(
                    "parameter_invalid",
                    "The emulator updates cancel_at_period_end only.",
                    Some("cancel_at_period_end"),
                ));
            }
        };
        let subscription = self
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| missing("subscription", id))?;
        subscription["cancel_at_period_end"] = json!(at_period_end);
        let subscription = subscription.clone();
        self.emit("customer.subscription.updated", &subscription, None);
        Ok(subscription)
    }

    /// Every live subscription whose period has ended moves to the next one: canceled if asked
    /// to at the period's end, else a new invoice charged to the customer's card.
    pub fn renew_due_subscriptions(&mut self) {
        loop {
            let now = self.now();
            let due: Option<String> = self
                .subscriptions
                .values()
                .find(|s| {
                    (s["status"] == "active" || s["status"] == "past_due")
                        && s["items"]["data"][0]["current_period_end"]
                            .as_i64()
                            .is_some_and(|end| end <= now)
                })
                .and_then(|s| s["id"].as_str().map(str::to_owned));
            let Some(id) = due else { return };
            let Some(subscription) = self.subscriptions.get_mut(&id) else {
                return;
            };
            if subscription["cancel_at_period_end"] == true {
                let _ = self.cancel_subscription(&id);
                continue;
            }
            let item = &mut subscription["items"]["data"][0];
            let start = item["current_period_end"].as_i64().unwrap_or(now);
            let interval = item["price"]["recurring"]["interval"]
                .as_str()
                .unwrap_or("month")
                .to_owned();
            item["current_period_start"] = json!(start);
            item["current_period_end"] = json!(period_end(start, &interval));
            if let Ok(invoice) = self.open_invoice(&id, "subscription_cycle") {
                let invoice_id = invoice["id"].as_str().unwrap_or_default().to_owned();
                // A decline leaves the invoice open and the subscription past due.
                let _ = self.attempt_invoice(&invoice_id);
            }
        }
    }
}
