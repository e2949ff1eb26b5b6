//! Stripe's JSON objects as the emulator returns them: every key of Stripe's own example object
//! is present (those the emulator does not model are `null`), so clients that read any field
//! find it.

use serde_json::{Map, Value, json};

const PAYMENT_INTENT_KEYS: &[&str] = &[
    "amount",
    "amount_capturable",
    "amount_details",
    "amount_received",
    "application",
    "application_fee_amount",
    "automatic_payment_methods",
    "canceled_at",
    "cancellation_reason",
    "capture_method",
    "client_secret",
    "confirmation_method",
    "created",
    "currency",
    "customer",
    "customer_account",
    "description",
    "excluded_payment_method_types",
    "id",
    "last_payment_error",
    "latest_charge",
    "livemode",
    "managed_payments",
    "metadata",
    "next_action",
    "object",
    "on_behalf_of",
    "payment_method",
    "payment_method_configuration_details",
    "payment_method_options",
    "payment_method_types",
    "processing",
    "receipt_email",
    "review",
    "setup_future_usage",
    "shipping",
    "source",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "status",
    "transfer_data",
    "transfer_group",
];
const REFUND_KEYS: &[&str] = &[
    "amount",
    "balance_transaction",
    "charge",
    "created",
    "currency",
    "customer",
    "customer_account",
    "destination_details",
    "id",
    "metadata",
    "object",
    "payment_intent",
    "payment_method",
    "reason",
    "receipt_number",
    "source_transfer_reversal",
    "status",
    "transfer_reversal",
];
const CHARGE_KEYS: &[&str] = &[
    "amount",
    "amount_captured",
    "amount_refunded",
    "application",
    "application_fee",
    "application_fee_amount",
    "balance_transaction",
    "billing_details",
    "calculated_statement_descriptor",
    "captured",
    "created",
    "currency",
    "customer",
    "description",
    "disputed",
    "failure_balance_transaction",
    "failure_code",
    "failure_message",
    "fraud_details",
    "id",
    "livemode",
    "metadata",
    "object",
    "on_behalf_of",
    "outcome",
    "paid",
    "payment_intent",
    "payment_method",
    "payment_method_details",
    "receipt_email",
    "receipt_number",
    "receipt_url",
    "refunded",
    "refunds",
    "review",
    "shipping",
    "source",
    "source_transfer",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "status",
    "transfer_data",
    "transfer_group",
];
const DISPUTE_KEYS: &[&str] = &[
    "amount",
    "balance_transactions",
    "charge",
    "created",
    "currency",
    "enhanced_eligibility_types",
    "evidence",
    "evidence_details",
    "id",
    "is_charge_refundable",
    "livemode",
    "metadata",
    "object",
    "payment_intent",
    "payment_method_details",
    "reason",
    "status",
];
const CHECKOUT_SESSION_KEYS: &[&str] = &[
    "adaptive_pricing",
    "after_expiration",
    "allow_promotion_codes",
    "amount_subtotal",
    "amount_total",
    "automatic_tax",
    "billing_address_collection",
    "cancel_url",
    "client_reference_id",
    "client_secret",
    "collected_information",
    "consent",
    "consent_collection",
    "created",
    "currency",
    "currency_conversion",
    "custom_fields",
    "custom_text",
    "customer",
    "customer_account",
    "customer_creation",
    "customer_details",
    "customer_email",
    "discounts",
    "expires_at",
    "id",
    "integration_identifier",
    "invoice",
    "invoice_creation",
    "livemode",
    "locale",
    "managed_payments",
    "metadata",
    "mode",
    "object",
    "origin_context",
    "payment_intent",
    "payment_link",
    "payment_method_collection",
    "payment_method_configuration_details",
    "payment_method_options",
    "payment_method_types",
    "payment_status",
    "permissions",
    "phone_number_collection",
    "recovered_from",
    "saved_payment_method_options",
    "setup_intent",
    "shipping_address_collection",
    "shipping_cost",
    "shipping_options",
    "status",
    "submit_type",
    "subscription",
    "success_url",
    "total_details",
    "ui_mode",
    "url",
    "wallet_options",
];
const ACCOUNT_KEYS: &[&str] = &[
    "business_profile",
    "business_type",
    "capabilities",
    "charges_enabled",
    "controller",
    "country",
    "created",
    "default_currency",
    "details_submitted",
    "email",
    "external_accounts",
    "future_requirements",
    "id",
    "metadata",
    "object",
    "payouts_enabled",
    "requirements",
    "settings",
    "tos_acceptance",
    "type",
];
const TRANSFER_KEYS: &[&str] = &[
    "amount",
    "amount_reversed",
    "balance_transaction",
    "created",
    "currency",
    "description",
    "destination",
    "destination_payment",
    "id",
    "livemode",
    "metadata",
    "object",
    "reversals",
    "reversed",
    "source_transaction",
    "source_type",
    "transfer_group",
];
const TRANSFER_REVERSAL_KEYS: &[&str] = &[
    "amount",
    "balance_transaction",
    "created",
    "currency",
    "destination_payment_refund",
    "id",
    "metadata",
    "object",
    "source_refund",
    "transfer",
];
const CUSTOMER_KEYS: &[&str] = &[
    "address",
    "balance",
    "created",
    "currency",
    "default_source",
    "delinquent",
    "description",
    "discount",
    "email",
    "id",
    "invoice_prefix",
    "invoice_settings",
    "livemode",
    "metadata",
    "name",
    "next_invoice_sequence",
    "object",
    "phone",
    "preferred_locales",
    "shipping",
    "tax_exempt",
    "test_clock",
];
const SUBSCRIPTION_KEYS: &[&str] = &[
    "application",
    "application_fee_percent",
    "automatic_tax",
    "billing_cycle_anchor",
    "billing_cycle_anchor_config",
    "billing_mode",
    "billing_schedules",
    "billing_thresholds",
    "cancel_at",
    "cancel_at_period_end",
    "canceled_at",
    "cancellation_details",
    "collection_method",
    "created",
    "currency",
    "customer",
    "customer_account",
    "days_until_due",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "description",
    "discounts",
    "ended_at",
    "id",
    "invoice_settings",
    "items",
    "latest_invoice",
    "livemode",
    "managed_payments",
    "metadata",
    "next_pending_invoice_item_invoice",
    "object",
    "on_behalf_of",
    "pause_collection",
    "payment_settings",
    "pending_invoice_item_interval",
    "pending_setup_intent",
    "pending_update",
    "schedule",
    "start_date",
    "status",
    "test_clock",
    "transfer_data",
    "trial_end",
    "trial_settings",
    "trial_start",
];
const INVOICE_KEYS: &[&str] = &[
    "account_country",
    "account_name",
    "account_tax_ids",
    "amount_due",
    "amount_overpaid",
    "amount_paid",
    "amount_remaining",
    "amount_shipping",
    "application",
    "attempt_count",
    "attempted",
    "auto_advance",
    "automatic_tax",
    "automatically_finalizes_at",
    "billing_reason",
    "collection_method",
    "created",
    "currency",
    "custom_fields",
    "customer",
    "customer_account",
    "customer_address",
    "customer_email",
    "customer_name",
    "customer_phone",
    "customer_shipping",
    "customer_tax_exempt",
    "customer_tax_ids",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "description",
    "discounts",
    "due_date",
    "effective_at",
    "ending_balance",
    "footer",
    "from_invoice",
    "hosted_invoice_url",
    "id",
    "invoice_pdf",
    "issuer",
    "last_finalization_error",
    "latest_revision",
    "lines",
    "livemode",
    "metadata",
    "next_payment_attempt",
    "number",
    "object",
    "on_behalf_of",
    "parent",
    "payment_settings",
    "period_end",
    "period_start",
    "post_payment_credit_notes_amount",
    "pre_payment_credit_notes_amount",
    "receipt_number",
    "rendering",
    "shipping_cost",
    "shipping_details",
    "starting_balance",
    "statement_descriptor",
    "status",
    "status_transitions",
    "subscription",
    "subtotal",
    "subtotal_excluding_tax",
    "test_clock",
    "total",
    "total_discount_amounts",
    "total_excluding_tax",
    "total_pretax_credit_amounts",
    "total_taxes",
    "webhooks_delivered_at",
];
/// An invoice's line, as Stripe's example has it.
const INVOICE_LINE_KEYS: &[&str] = &[
    "amount",
    "currency",
    "description",
    "discount_amounts",
    "discountable",
    "discounts",
    "id",
    "invoice",
    "livemode",
    "metadata",
    "object",
    "parent",
    "period",
    "pretax_credit_amounts",
    "pricing",
    "quantity",
    "quantity_decimal",
    "subscription",
    "subtotal",
    "taxes",
];
pub const API_VERSION: &str = "2025-03-31.basil";

/// Adds every key of `keys` that `object` lacks, as `null`.
fn complete(mut object: Map<String, Value>, keys: &[&str]) -> Value {
    for key in keys {
        object.entry((*key).to_owned()).or_insert(Value::Null);
    }
    Value::Object(object)
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub struct NewIntent<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub capture_method: &'a str,
    pub metadata: Value,
    pub description: Option<String>,
    pub created: i64,
}

pub fn payment_intent(new: NewIntent<'_>) -> Value {
    let object = json!({
        "id": new.id,
        "object": "payment_intent",
        "amount": new.amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "amount_details": {"tip": {}},
        "automatic_payment_methods": null,
        "capture_method": new.capture_method,
        "client_secret": format!("{}_secret_{}", new.id, new.secret),
        "confirmation_method": "automatic",
        "created": new.created,
        "currency": new.currency,
        "description": new.description,
        "excluded_payment_method_types": null,
        "livemode": false,
        "metadata": new.metadata,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "status": "requires_payment_method",
    });
    complete(as_map(object), PAYMENT_INTENT_KEYS)
}

pub fn charge(id: &str, intent: &Value, captured: bool, created: i64) -> Value {
    let amount = intent["amount"].as_i64().unwrap_or(0);
    let object = json!({
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": if captured { amount } else { 0 },
        "amount_refunded": 0,
        "billing_details": {"address": null, "email": null, "name": null, "phone": null},
        "captured": captured,
        "created": created,
        "currency": intent["currency"],
        "disputed": false,
        "fraud_details": {},
        "livemode": false,
        "metadata": intent["metadata"],
        "outcome": {"network_status": "approved_by_network", "type": "authorized", "risk_level": "normal"},
        "paid": true,
        "payment_intent": intent["id"],
        "payment_method": intent["payment_method"],
        "refunded": false,
        "refunds": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/charges/{id}/refunds")},
        "status": "succeeded",
    });
    complete(as_map(object), CHARGE_KEYS)
}

pub fn refund(
    id: &str,
    charge: &Value,
    amount: i64,
    reason: Option<String>,
    metadata: Value,
    created: i64,
) -> Value {
    let object = json!({
        "id": id,
        "object": "refund",
        "amount": amount,
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "metadata": metadata,
        "payment_intent": charge["payment_intent"],
        "reason": reason,
        "status": "succeeded",
    });
    complete(as_map(object), REFUND_KEYS)
}

pub fn dispute(id: &str, charge: &Value, created: i64) -> Value {
    let object = json!({
        "id": id,
        "object": "dispute",
        "amount": charge["amount_captured"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "evidence": {},
        "evidence_details": {"due_by": created + 7 * 86_400, "has_evidence": false, "past_due": false, "submission_count": 0},
        "is_charge_refundable": false,
        "livemode": false,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "reason": "fraudulent",
        "status": "needs_response",
    });
    complete(as_map(object), DISPUTE_KEYS)
}

/// What a Checkout Session is created with (line items are kept apart, as at Stripe).
pub struct NewSession<'a> {
    pub id: &'a str,
    /// `payment` or `subscription`.
    pub mode: &'a str,
    pub customer: Option<&'a str>,
    pub url: String,
    pub amount_total: i64,
    pub currency: &'a str,
    pub success_url: &'a str,
    pub cancel_url: Option<&'a str>,
    pub client_reference_id: Option<&'a str>,
    pub customer_email: Option<&'a str>,
    pub metadata: Value,
    pub expires_at: i64,
    pub created: i64,
}

pub fn checkout_session(new: NewSession<'_>) -> Value {
    let object = json!({
        "id": new.id,
        "object": "checkout.session",
        "amount_subtotal": new.amount_total,
        "amount_total": new.amount_total,
        "cancel_url": new.cancel_url,
        "client_reference_id": new.client_reference_id,
        "created": new.created,
        "currency": new.currency,
        "custom_fields": [],
        "customer_email": new.customer_email,
        "expires_at": new.expires_at,
        "livemode": false,
        "metadata": new.metadata,
        "mode": new.mode,
        "customer": new.customer,
        "payment_intent": null,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "shipping_options": [],
        "status": "open",
        "success_url": new.success_url,
        "ui_mode": "hosted",
        "url": new.url,
    });
    complete(as_map(object), CHECKOUT_SESSION_KEYS)
}

/// One of a session's line items (`GET /v1/checkout/sessions/{id}/line_items`).
pub fn line_item(id: &str, name: &str, unit_amount: i64, quantity: i64, currency: &str) -> Value {
    let amount = unit_amount.saturating_mul(quantity);
    json!({
        "id": id,
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount,
        "amount_tax": 0,
        "amount_total": amount,
        "currency": currency,
        "description": name,
        "price": {
            "object": "price",
            "active": false,
            "currency": currency,
            "product_data": {"name": name},
            "type": "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount.to_string(),
        },
        "quantity": quantity,
    })
}

/// A connected Express account, as the platform creates it: not yet able to take charges or
/// receive payouts.
pub fn account(
    id: &str,
    email: Option<&str>,
    country: &str,
    metadata: Value,
    created: i64,
) -> Value {
    let object = json!({
        "id": id,
        "object": "account",
        "business_type": null,
        "capabilities": {"card_payments": "inactive", "transfers": "inactive"},
        "charges_enabled": false,
        "controller": {"type": "application"},
        "country": country,
        "created": created,
        "default_currency": "eur",
        "details_submitted": false,
        "email": email,
        "metadata": metadata,
        "payouts_enabled": false,
        "type": "express",
    });
    complete(as_map(object), ACCOUNT_KEYS)
}

pub fn customer(id: &str, email: Option<&str>, metadata: Value, created: i64) -> Value {
    let object = json!({
        "id": id,
        "object": "customer",
        "balance": 0,
        "created": created,
        "delinquent": false,
        "email": email,
        "invoice_settings": {"default_payment_method": null},
        "livemode": false,
        "metadata": metadata,
        "preferred_locales": [],
        "tax_exempt": "none",
    });
    complete(as_map(object), CUSTOMER_KEYS)
}

/// A subscription of one recurring price; its period lives on its item, as in Stripe's API
/// since 2025.
pub struct NewSubscription<'a> {
    pub id: &'a str,
    pub item_id: &'a str,
    pub price_id: &'a str,
    pub product_id: &'a str,
    pub customer: &'a str,
    pub name: &'a str,
    pub unit_amount: i64,
    pub currency: &'a str,
    pub interval: &'a str,
    pub metadata: Value,
    pub period: (i64, i64),
    pub created: i64,
}

pub fn subscription(new: NewSubscription<'_>) -> Value {
    let object = json!({
        "id": new.id,
        "object": "subscription",
        "billing_cycle_anchor": new.period.0,
        "cancel_at_period_end": false,
        "collection_method": "charge_automatically",
        "created": new.created,
        "currency": new.currency,
        "customer": new.customer,
        "items": {"object": "list", "has_more": false, "data": [{
            "id": new.item_id,
            "object": "subscription_item",
            "current_period_start": new.period.0,
            "current_period_end": new.period.1,
            "price": {"id": new.price_id, "object": "price", "currency": new.currency,
                      "unit_amount": new.unit_amount, "product": new.product_id,
                      "product_data": {"name": new.name}, "type": "recurring",
                      "recurring": {"interval": new.interval, "interval_count": 1}},
            "quantity": 1,
            "subscription": new.id,
        }]},
        "livemode": false,
        "metadata": new.metadata,
        "start_date": new.created,
        "status": "active",
    });
    complete(as_map(object), SUBSCRIPTION_KEYS)
}

/// An invoice of one period of a subscription.
pub struct NewInvoice<'a> {
    pub id: &'a str,
    pub line_id: &'a str,
    pub subscription: &'a Value,
    pub billing_reason: &'a str,
    /// The customer's balance when it is made: negative is credit the invoice uses up first.
    pub starting_balance: i64,
    pub created: i64,
}

/// Finalized at once: the customer's balance is applied (`amount_due` is the total less the
/// credit used, never below zero) and its one line bills the subscription item's price for the
/// item's current period, in Stripe's shape since API version 2025-03-31.
pub fn invoice(new: NewInvoice<'_>) -> Value {
    let item = &new.subscription["items"]["data"][0];
    let price = &item["price"];
    let quantity = item["quantity"].as_i64().unwrap_or(1);
    let amount = price["unit_amount"].as_i64().unwrap_or(0) * quantity;
    let due = (amount + new.starting_balance).max(0);
    let period = json!({"start": item["current_period_start"], "end": item["current_period_end"]});
    let line = json!({
        "id": new.line_id,
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": format!("{quantity} × {}", price["product_data"]["name"].as_str().unwrap_or_default()),
        "discount_amounts": [],
        "discountable": true,
        "discounts": [],
        "invoice": new.id,
        "livemode": false,
        "metadata": {},
        "parent": {"type": "subscription_item_details", "invoice_item_details": null,
            "subscription_item_details": {"invoice_item": null, "proration": false,
                "proration_details": {"credited_items": null},
                "subscription": new.subscription["id"], "subscription_item": item["id"]}},
        "period": period,
        "pretax_credit_amounts": [],
        "pricing": {"type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price["unit_amount"].as_i64().map(|unit| unit.to_string())},
        "quantity": quantity,
        "subtotal": amount,
        "taxes": [],
    });
    let object = json!({
        "id": new.id,
        "object": "invoice",
        "amount_due": due,
        "amount_paid": 0,
        "amount_remaining": due,
        "attempt_count": 0,
        "attempted": false,
        "billing_reason": new.billing_reason,
        "collection_method": "charge_automatically",
        "created": new.created,
        "currency": price["currency"],
        "customer": new.subscription["customer"],
        "ending_balance": (amount + new.starting_balance).min(0),
        "lines": {"object": "list", "has_more": false, "data": [complete(as_map(line), INVOICE_LINE_KEYS)],
                  "url": format!("/v1/invoices/{}/lines", new.id)},
        "livemode": false,
        "metadata": {},
        "parent": {"type": "subscription_details", "subscription_details": {
            "subscription": new.subscription["id"], "metadata": new.subscription["metadata"]}},
        "period_start": item["current_period_start"],
        "period_end": item["current_period_end"],
        "starting_balance": new.starting_balance,
        "status": "open",
        "subscription": new.subscription["id"],
        "subtotal": amount,
        "total": amount,
    });
    complete(as_map(object), INVOICE_KEYS)
}

pub fn event(
    id: &str,
    kind: &str,
    object: &Value,
    created: i64,
    request: Option<(&str, Option<&str>)>,
) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {
            "id": request.map(|(id, _)| id),
            "idempotency_key": request.and_then(|(_, key)| key),
        },
        "type": kind,
    })
}

/// Stripe's error body.
pub fn error(kind: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Value {
    let mut error = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    json!({ "error": error })
}

/// A transfer to a connected account, with no reversals yet.
pub struct NewTransfer<'a> {
    pub id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub destination: &'a str,
    pub transfer_group: Option<&'a str>,
    pub source_transaction: Option<&'a str>,
    pub metadata: Value,
    pub created: i64,
}

pub fn transfer(new: NewTransfer<'_>) -> Value {
    let object = json!({
        "id": new.id,
        "object": "transfer",
        "amount": new.amount,
        "amount_reversed": 0,
        "created": new.created,
        "currency": new.currency,
        "destination": new.destination,
        "livemode": false,
        "metadata": new.metadata,
        "reversals": list(&format!("/v1/transfers/{}/reversals", new.id), Vec::new(), false),
        "reversed": false,
        "source_transaction": new.source_transaction,
        "source_type": "card",
        "transfer_group": new.transfer_group,
    });
    complete(as_map(object), TRANSFER_KEYS)
}

pub fn transfer_reversal(
    id: &str,
    transfer: &Value,
    amount: i64,
    metadata: Value,
    created: i64,
) -> Value {
    let object = json!({
        "id": id,
        "object": "transfer_reversal",
        "amount": amount,
        "created": created,
        "currency": transfer["currency"],
        "metadata": metadata,
        "transfer": transfer["id"],
    });
    complete(as_map(object), TRANSFER_REVERSAL_KEYS)
}

pub fn list(url: &str, data: Vec<Value>, has_more: bool) -> Value {
    json!({ "object": "list", "data": data, "has_more": has_more, "url": url })
}
