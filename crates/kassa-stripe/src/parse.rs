//! Stripe's JSON objects, read into the port's types. Stripe adds fields over time, so unknown
//! fields are ignored; a missing required field is an error. Amounts stay integers of minor
//! units, as Stripe sends them.

use kassa_app::ports::{
    Destination, EventPage, InvoicePrice, ProviderAccount, ProviderCharge, ProviderCheckoutSession,
    ProviderDispute, ProviderEvent, ProviderEventObject, ProviderEventSummary, ProviderInvoice,
    ProviderPaymentIntent, ProviderRefund, ProviderSubscription, ProviderSubscriptionSession,
    ProviderTransfer, ProviderTransferReversal, SessionStatus,
};
use kassa_domain::payment::PaymentStatus;
use kassa_domain::refund::RefundStatus;
use serde_json::Value;

/// A field that was missing or of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

type Parsed<T> = Result<T, ParseError>;

fn text(object: &Value, field: &str) -> Parsed<String> {
    object[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ParseError(format!("{field} is not a string")))
}

fn integer(object: &Value, field: &str) -> Parsed<i64> {
    object[field]
        .as_i64()
        .ok_or_else(|| ParseError(format!("{field} is not an integer")))
}

fn optional_integer(object: &Value, field: &str) -> i64 {
    object[field].as_i64().unwrap_or(0)
}

/// A field that is an id, or an expanded object carrying one.
fn id_of(object: &Value, field: &str) -> Option<String> {
    match &object[field] {
        Value::String(id) => Some(id.clone()),
        Value::Object(expanded) => expanded
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

fn metadata(object: &Value) -> Vec<(String, String)> {
    object["metadata"]
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(key, value)| value.as_str().map(|v| (key.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

pub fn payment_status(status: &str) -> Parsed<PaymentStatus> {
    match status {
        // Kassa confirms client-side; an intent awaiting confirmation awaits the customer.
        "requires_confirmation" => Ok(PaymentStatus::RequiresPaymentMethod),
        "creating" | "failed" => Err(ParseError(format!(
            "{status} is not a Stripe PaymentIntent status"
        ))),
        other => PaymentStatus::parse(other)
            .ok_or_else(|| ParseError(format!("unknown PaymentIntent status {other}"))),
    }
}

fn refund_status(status: &str) -> Parsed<RefundStatus> {
    match status {
        "requires_action" => Ok(RefundStatus::Pending),
        other => RefundStatus::parse(other)
            .ok_or_else(|| ParseError(format!("unknown refund status {other}"))),
    }
}

pub fn payment_intent(object: &Value) -> Parsed<ProviderPaymentIntent> {
    let error = &object["last_payment_error"];
    let last_error = error["decline_code"]
        .as_str()
        .or_else(|| error["code"].as_str())
        .or_else(|| error["message"].as_str())
        .map(str::to_owned);
    Ok(ProviderPaymentIntent {
        id: text(object, "id")?,
        status: payment_status(&text(object, "status")?)?,
        amount_minor: integer(object, "amount")?,
        amount_capturable_minor: optional_integer(object, "amount_capturable"),
        amount_received_minor: optional_integer(object, "amount_received"),
        currency: text(object, "currency")?,
        client_secret: object["client_secret"].as_str().map(str::to_owned),
        latest_charge: id_of(object, "latest_charge"),
        last_error,
        metadata: metadata(object),
        destination: id_of(&object["transfer_data"], "destination").map(|account_id| Destination {
            account_id,
            application_fee_minor: optional_integer(object, "application_fee_amount"),
        }),
    })
}

pub fn refund(object: &Value) -> Parsed<ProviderRefund> {
    Ok(ProviderRefund {
        id: text(object, "id")?,
        payment_intent_id: id_of(object, "payment_intent"),
        amount_minor: integer(object, "amount")?,
        currency: text(object, "currency")?,
        status: refund_status(&text(object, "status")?)?,
        metadata: metadata(object),
    })
}

fn charge(object: &Value) -> Parsed<ProviderCharge> {
    let refunds = object["refunds"]["data"]
        .as_array()
        .map(|list| list.iter().map(refund).collect::<Parsed<Vec<_>>>())
        .transpose()?
        .unwrap_or_default();
    Ok(ProviderCharge {
        id: text(object, "id")?,
        payment_intent_id: id_of(object, "payment_intent"),
        amount_minor: integer(object, "amount")?,
        amount_captured_minor: optional_integer(object, "amount_captured"),
        amount_refunded_minor: optional_integer(object, "amount_refunded"),
        currency: text(object, "currency")?,
        refunds,
    })
}

fn dispute(object: &Value) -> Parsed<ProviderDispute> {
    Ok(ProviderDispute {
        id: text(object, "id")?,
        charge_id: id_of(object, "charge").ok_or_else(|| ParseError("charge is missing".into()))?,
        payment_intent_id: id_of(object, "payment_intent"),
        amount_minor: integer(object, "amount")?,
        currency: text(object, "currency")?,
        status: text(object, "status")?,
        reason: object["reason"].as_str().map(str::to_owned),
        evidence_due_by: object["evidence_details"]["due_by"].as_i64(),
    })
}

pub fn checkout_session(object: &Value) -> Parsed<ProviderCheckoutSession> {
    Ok(ProviderCheckoutSession {
        id: text(object, "id")?,
        status: session_status(object)?,
        paid: text(object, "payment_status")? == "paid",
        url: object["url"].as_str().map(str::to_owned),
        amount_total_minor: integer(object, "amount_total")?,
        currency: text(object, "currency")?,
        payment_intent_id: id_of(object, "payment_intent"),
        expires_at_secs: integer(object, "expires_at")?,
        metadata: metadata(object),
    })
}

fn session_status(object: &Value) -> Parsed<SessionStatus> {
    match text(object, "status")?.as_str() {
        "open" => Ok(SessionStatus::Open),
        "complete" => Ok(SessionStatus::Complete),
        "expired" => Ok(SessionStatus::Expired),
        other => Err(ParseError(format!(
            "unknown Checkout Session status {other}"
        ))),
    }
}

pub fn subscription_session(object: &Value) -> Parsed<ProviderSubscriptionSession> {
    Ok(ProviderSubscriptionSession {
        id: text(object, "id")?,
        status: session_status(object)?,
        customer_id: id_of(object, "customer"),
        subscription_id: id_of(object, "subscription"),
        metadata: metadata(object),
    })
}

pub fn subscription(object: &Value) -> Parsed<ProviderSubscription> {
    Ok(ProviderSubscription {
        id: text(object, "id")?,
        customer_id: id_of(object, "customer"),
        status: text(object, "status")?,
        cancel_at_period_end: object["cancel_at_period_end"].as_bool().unwrap_or(false),
        metadata: metadata(object),
    })
}

/// Stripe names the invoice's subscription under `parent.subscription_details` since API
/// version 2025-03-31, and at the top level before; the period an invoice pays for is its
/// subscription line's (the invoice's own `period_*` cover usage before it).
pub fn invoice(object: &Value) -> Parsed<ProviderInvoice> {
    let details = &object["parent"]["subscription_details"];
    let line = subscription_line(object);
    let period_end = line
        .unwrap_or(&object["lines"]["data"][0])
        .pointer("/period/end")
        .and_then(Value::as_i64)
        .map_or_else(|| integer(object, "period_end"), Ok)?;
    Ok(ProviderInvoice {
        id: text(object, "id")?,
        provider_subscription_id: id_of(details, "subscription")
            .or_else(|| id_of(object, "subscription")),
        kassa_subscription_id: metadata(details)
            .into_iter()
            .chain(metadata(&object["subscription_details"]))
            .find(|(key, _)| key == "kassa_subscription_id")
            .map(|(_, id)| id),
        paid: text(object, "status")? == "paid",
        amount_paid_minor: optional_integer(object, "amount_paid"),
        // Required: "paid in full" is never read from an absent field.
        amount_remaining_minor: integer(object, "amount_remaining")?,
        currency: text(object, "currency")?,
        period_end,
        billing_reason: object["billing_reason"].as_str().map(str::to_owned),
        price: line.and_then(line_price),
    })
}

/// The invoice's one subscription line that is not a proration (since API version 2025-03-31
/// `parent.type` is `subscription_item_details`; before, the line's `type` was `subscription`),
/// if it has exactly one and the list is complete: a Kassa subscription has one item, and a
/// price read from part of an invoice is not read at all.
fn subscription_line(object: &Value) -> Option<&Value> {
    let lines = &object["lines"];
    if lines["has_more"].as_bool().unwrap_or(false) {
        return None;
    }
    let mut found = lines["data"].as_array()?.iter().filter(|line| {
        let item = &line["parent"]["subscription_item_details"];
        let current =
            line["parent"]["type"] == "subscription_item_details" && item["proration"] != true;
        let older = line["type"] == "subscription" && line["proration"] != true;
        current || older
    });
    let line = found.next()?;
    found.next().is_none().then_some(line)
}

/// A subscription line's price before discounts and tax: `pricing.unit_amount_decimal` (a
/// decimal string) since API version 2025-03-31, `price.unit_amount` before; `None` when the
/// unit amount is not a whole number of minor units or the quantity is missing.
fn line_price(line: &Value) -> Option<InvoicePrice> {
    let unit_amount_minor = match &line["pricing"]["unit_amount_decimal"] {
        Value::String(decimal) => whole_minor_units(decimal),
        Value::Number(number) => number.as_i64(),
        _ => line["price"]["unit_amount"].as_i64(),
    }?;
    Some(InvoicePrice {
        unit_amount_minor,
        quantity: line["quantity"].as_i64()?,
    })
}

/// `"900"` or `"900.000"` as 900; `"900.5"` (a fraction of a minor unit) as nothing.
fn whole_minor_units(decimal: &str) -> Option<i64> {
    let (whole, fraction) = decimal.split_once('.').unwrap_or((decimal, ""));
    if !fraction.bytes().all(|digit| digit == b'0') {
        return None;
    }
    whole.parse().ok()
}

pub fn transfer(object: &Value) -> Parsed<ProviderTransfer> {
    Ok(ProviderTransfer {
        id: text(object, "id")?,
        amount_minor: integer(object, "amount")?,
        amount_reversed_minor: optional_integer(object, "amount_reversed"),
        currency: text(object, "currency")?,
        destination: id_of(object, "destination")
            .ok_or_else(|| ParseError("destination is missing".into()))?,
        transfer_group: object["transfer_group"].as_str().map(str::to_owned),
    })
}

pub fn transfer_reversal(object: &Value) -> Parsed<ProviderTransferReversal> {
    Ok(ProviderTransferReversal {
        id: text(object, "id")?,
        amount_minor: integer(object, "amount")?,
        metadata: metadata(object),
    })
}

pub fn account(object: &Value) -> Parsed<ProviderAccount> {
    Ok(ProviderAccount {
        id: text(object, "id")?,
        charges_enabled: object["charges_enabled"].as_bool().unwrap_or(false),
        payouts_enabled: object["payouts_enabled"].as_bool().unwrap_or(false),
    })
}

pub fn event(body: &Value) -> Parsed<ProviderEvent> {
    let object = &body["data"]["object"];
    let kind = object["object"].as_str().unwrap_or_default();
    let parsed = match kind {
        "payment_intent" => ProviderEventObject::PaymentIntent(payment_intent(object)?),
        "refund" => ProviderEventObject::Refund(refund(object)?),
        "charge" => ProviderEventObject::Charge(charge(object)?),
        "dispute" => ProviderEventObject::Dispute(dispute(object)?),
        "checkout.session" if object["mode"] == "subscription" => {
            ProviderEventObject::SubscriptionSession(subscription_session(object)?)
        }
        // A session of another mode (setup) may come from another integration on the same
        // account; it carries no amount, and Kassa has nothing to do with it. Refusing its
        // signed event would only make Stripe retry it for days.
        "checkout.session"
            if object["mode"]
                .as_str()
                .is_some_and(|mode| mode != "payment") =>
        {
            ProviderEventObject::Other {
                object_type: format!(
                    "checkout.session ({})",
                    object["mode"].as_str().unwrap_or_default()
                ),
            }
        }
        "checkout.session" => ProviderEventObject::CheckoutSession(checkout_session(object)?),
        "subscription" => ProviderEventObject::Subscription(subscription(object)?),
        "account" => ProviderEventObject::Account(account(object)?),
        // Only the two events Kassa acts on are read; the others (`invoice.upcoming` has no id)
        // are acknowledged as they come.
        "invoice"
            if matches!(
                body["type"].as_str(),
                Some("invoice.paid" | "invoice.payment_failed")
            ) =>
        {
            ProviderEventObject::Invoice(invoice(object)?)
        }
        other => ProviderEventObject::Other {
            object_type: other.to_owned(),
        },
    };
    Ok(ProviderEvent {
        id: text(body, "id")?,
        event_type: text(body, "type")?,
        created_secs: integer(body, "created")?,
        object: parsed,
    })
}

pub fn event_page(list: &Value) -> Parsed<EventPage> {
    let events = list["data"]
        .as_array()
        .ok_or_else(|| ParseError("data is not a list".into()))?
        .iter()
        .map(|event| {
            Ok(ProviderEventSummary {
                id: text(event, "id")?,
                event_type: text(event, "type")?,
                created_secs: integer(event, "created")?,
                payload: event.to_string(),
            })
        })
        .collect::<Parsed<Vec<_>>>()?;
    Ok(EventPage {
        events,
        has_more: list["has_more"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A succeeded intent without `amount_received` reads as zero received, which the capture
    /// rule flags (risk W6): absence must never read as "everything".
    #[test]
    fn risk_w6_a_missing_amount_received_reads_as_nothing_received() {
        let object = serde_json::json!({
            "id": "pi_1", "object": "payment_intent", "status": "succeeded",
            "amount": 1999, "currency": "eur", "metadata": {}
        });
        let intent = payment_intent(&object).expect("parses");
        assert_eq!(intent.amount_received_minor, 0);
        assert!(kassa_domain::payment::check_capture(1999, intent.amount_received_minor).is_err());
    }

    fn stripe_example(resource: &str) -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/stripe/stripe_openapi_fixtures3.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (fixtures/stripe/ of the repository)"));
        let fixtures: Value = serde_json::from_str(&text).expect("json");
        fixtures["resources"][resource].clone()
    }

    /// Stripe's own example invoice and subscription (API version 2025-03-31 and later: the
    /// subscription under `parent.subscription_details`, the period on the line) read as Kassa
    /// needs them; a subscription-mode session becomes one Kassa reads, not one it ignores.
    #[test]
    fn stripes_example_invoice_subscription_and_subscription_session_are_read() {
        let mut example = stripe_example("invoice");
        let invoice = invoice(&example).expect("invoice");
        assert_eq!(
            invoice.provider_subscription_id.as_deref(),
            Some("subscription")
        );
        assert_eq!(invoice.period_end, 1_721_954_054, "the line's period");
        assert!(!invoice.paid, "a draft");
        example["status"] = serde_json::json!("paid");
        example["parent"]["subscription_details"]["metadata"] =
            serde_json::json!({"kassa_subscription_id": "sub_kassa"});
        let paid = super::invoice(&example).expect("invoice");
        assert!(paid.paid);
        assert_eq!(paid.kassa_subscription_id.as_deref(), Some("sub_kassa"));
        assert_eq!(paid.amount_remaining_minor, 1_000);
        assert_eq!(paid.price, None, "its one line is an invoice item's");

        let subscription = subscription(&stripe_example("subscription")).expect("subscription");
        assert_eq!(
            subscription.customer_id.as_deref(),
            Some("cus_QXg1o8vcGmoR32")
        );
        assert!(subscription.cancel_at_period_end);
        assert_eq!(subscription.status, "active");

        let mut session = stripe_example("checkout.session");
        session["mode"] = serde_json::json!("subscription");
        session["status"] = serde_json::json!("complete");
        session["subscription"] = serde_json::json!("sub_1");
        let body = serde_json::json!({"id": "evt_1", "type": "checkout.session.completed",
                                      "created": 1, "data": {"object": session}});
        let event = super::event(&body).expect("readable");
        let ProviderEventObject::SubscriptionSession(read) = event.object else {
            panic!("{event:?}");
        };
        assert_eq!(read.subscription_id.as_deref(), Some("sub_1"));
    }

    /// Risk W6: the price an invoice billed is read from its one subscription line (the
    /// current shape and the one before 2025-03-31), and is nothing when it cannot be read
    /// whole: no such line, two of them, a list cut short, a fraction of a minor unit. Without
    /// `amount_remaining` an invoice is unreadable, never taken as paid in full.
    #[test]
    fn risk_w6_an_invoices_price_is_its_subscription_lines_or_nothing() {
        let mut example = stripe_example("invoice");
        example["status"] = serde_json::json!("paid");
        example["amount_paid"] = serde_json::json!(600);
        example["amount_remaining"] = serde_json::json!(0);
        let line = &mut example["lines"]["data"][0];
        line["parent"]["type"] = serde_json::json!("subscription_item_details");
        line["parent"]["subscription_item_details"]["proration"] = serde_json::json!(false);
        line["pricing"]["unit_amount_decimal"] = serde_json::json!("900.000000000000");
        line["period"]["end"] = serde_json::json!(1_800_000_000);
        let read = invoice(&example).expect("invoice");
        let price = Some(InvoicePrice {
            unit_amount_minor: 900,
            quantity: 1,
        });
        assert_eq!(
            (
                read.amount_paid_minor,
                read.amount_remaining_minor,
                read.price
            ),
            (600, 0, price)
        );
        assert_eq!(
            read.period_end, 1_800_000_000,
            "the subscription line's period"
        );

        let with = |change: &dyn Fn(&mut Value)| {
            let mut changed = example.clone();
            change(&mut changed);
            invoice(&changed).map(|read| read.price)
        };
        let older = with(&|inv| {
            let line = &mut inv["lines"]["data"][0];
            line["parent"] = Value::Null;
            line["pricing"] = Value::Null;
            line["type"] = serde_json::json!("subscription");
            line["price"] = serde_json::json!({"unit_amount": 900});
        });
        assert_eq!(older, Ok(price), "before 2025-03-31");
        let fraction = with(&|inv| {
            inv["lines"]["data"][0]["pricing"]["unit_amount_decimal"] = serde_json::json!("900.5");
        });
        assert_eq!(fraction, Ok(None));
        let proration = with(&|inv| {
            inv["lines"]["data"][0]["parent"]["subscription_item_details"]["proration"] =
                serde_json::json!(true);
        });
        assert_eq!(proration, Ok(None));
        let two = with(&|inv| {
            let line = inv["lines"]["data"][0].clone();
            inv["lines"]["data"] = serde_json::json!([line.clone(), line]);
        });
        assert_eq!(two, Ok(None));
        let cut_short = with(&|inv| inv["lines"]["has_more"] = serde_json::json!(true));
        assert_eq!(cut_short, Ok(None));
        let no_remaining = with(&|inv| inv["amount_remaining"] = Value::Null);
        assert!(no_remaining.is_err(), "{no_remaining:?}");
    }

    /// Another integration's setup-mode session has no amount: its event is read as an object
    /// Kassa does not act on (acknowledged), not refused as unreadable (which Stripe retries for
    /// days). A payment-mode session without its amount is still unreadable.
    #[test]
    fn risk_w5_sessions_of_other_modes_are_acknowledged_not_refused() {
        let event = |mode: &str| {
            serde_json::json!({
                "id": "evt_1", "type": "checkout.session.completed", "created": 1,
                "data": {"object": {"id": "cs_1", "object": "checkout.session", "mode": mode,
                    "status": "complete", "payment_status": "no_payment_required",
                    "amount_total": null, "currency": null, "expires_at": 2, "metadata": {}}}
            })
        };
        let setup = super::event(&event("setup")).expect("readable");
        assert!(
            matches!(setup.object, ProviderEventObject::Other { .. }),
            "{setup:?}"
        );
        assert!(super::event(&event("payment")).is_err());
    }
}
