//! The JSON shapes of API.md: request types (all `deny_unknown_fields`) and response types.
//! These are compatibility promises to storefronts; change them only with API.md.

use std::collections::BTreeMap;

use kassa_app::cart::CartView;
use kassa_app::ports::{CreditEntry, PlanRecord, SellerBalance, SellerRecord, SubscriptionRecord};
use kassa_app::ports::{InventoryLevel, Product, Variant};
use kassa_app::subscriptions::{CustomerView, SubscriptionPage};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductRequest {
    pub name: String,
    pub variants: Vec<CreateVariantRequest>,
    /// The marketplace seller it belongs to (`POST /v1/sellers`); none: the shop's own.
    pub seller_id: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVariantRequest {
    pub sku: String,
    pub unit_amount: i64,
    pub currency: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Credits each paid unit grants its buyer (a credit pack); 0 (the default) for goods.
    #[serde(default)]
    pub credits: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVariantRequest {
    pub unit_amount: Option<i64>,
    pub active: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetInventoryRequest {
    pub location: Option<String>,
    pub on_hand: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCartRequest {
    pub currency: String,
}

/// A cart line names a SKU and a quantity, never a price: `unit_amount`, `price` or `amount`
/// in the body is an unknown field and refused (risk S1).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLineRequest {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLineQuantityRequest {
    pub quantity: i64,
}

#[derive(Serialize, ToSchema)]
pub struct VariantBody {
    pub sku: String,
    pub product_id: String,
    pub unit_amount: i64,
    pub currency: String,
    pub attributes: BTreeMap<String, String>,
    pub active: bool,
    pub credits: i64,
}

impl From<&Variant> for VariantBody {
    fn from(variant: &Variant) -> VariantBody {
        VariantBody {
            sku: variant.sku.clone(),
            product_id: variant.product_id.clone(),
            unit_amount: variant.unit_price.amount_minor(),
            currency: variant.unit_price.currency().code().to_owned(),
            attributes: variant.attributes.clone(),
            active: variant.active,
            credits: variant.credits,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProductBody {
    pub id: String,
    pub name: String,
    pub variants: Vec<VariantBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
}

impl From<&Product> for ProductBody {
    fn from(product: &Product) -> ProductBody {
        ProductBody {
            id: product.id.clone(),
            name: product.name.clone(),
            variants: product.variants.iter().map(VariantBody::from).collect(),
            seller_id: product.seller_id.clone(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSellerRequest {
    pub name: String,
    pub email: String,
    /// ISO 3166-1 alpha-2, the seller's country at the provider.
    pub country: String,
}

#[derive(Serialize, ToSchema)]
pub struct SellerBody {
    pub id: String,
    #[schema(value_type = String, example = "seller")]
    pub object: &'static str,
    pub name: String,
    pub email: String,
    pub country: String,
    /// The seller's connected account at Stripe.
    pub account_id: Option<String>,
    /// Whether Stripe last reported the account able to take charges; a checkout of this
    /// seller's products is refused (409 `seller_unavailable`) while it is not.
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub created: i64,
}

impl From<&SellerRecord> for SellerBody {
    fn from(seller: &SellerRecord) -> SellerBody {
        SellerBody {
            id: seller.id.clone(),
            object: "seller",
            name: seller.name.clone(),
            email: seller.email.clone(),
            country: seller.country.clone(),
            account_id: seller.account_id.clone(),
            charges_enabled: seller.charges_enabled,
            payouts_enabled: seller.payouts_enabled,
            created: seller.created_at,
        }
    }
}

/// What a seller was paid, per currency, in minor units.
#[derive(Serialize, ToSchema)]
pub struct SellerBalanceBody {
    #[schema(value_type = String, example = "seller_balance")]
    pub object: &'static str,
    pub seller_id: String,
    pub balances: Vec<SellerCurrencyBalance>,
}

#[derive(Serialize, ToSchema)]
pub struct SellerCurrencyBalance {
    pub currency: String,
    /// Sent to the seller's account: destination charges less the platform's fee, and the
    /// transfers of several sellers' orders.
    pub paid: i64,
    /// Taken back from the seller by refunds.
    pub reversed: i64,
    /// Still to be sent (transfers not made yet, or refused by Stripe, and paid orders whose
    /// transfers are not planned yet), less what refunds still have to take back; negative when
    /// the seller owes the platform.
    pub owed: i64,
    /// Owed to the seller but waiting: paid orders that need a person's attention or have a
    /// dispute open. Not in `owed`; each order is in `holds` with why.
    pub held: i64,
    pub holds: Vec<SellerHoldBody>,
}

/// What one order owes the seller while its transfers wait, and why.
#[derive(Serialize, ToSchema)]
pub struct SellerHoldBody {
    pub order: String,
    pub amount: i64,
    /// The order's flag (as in its `needs_attention`), or `dispute_open: …`.
    pub reason: String,
}

impl SellerBalanceBody {
    pub fn new(seller_id: &str, balances: &[SellerBalance]) -> SellerBalanceBody {
        SellerBalanceBody {
            object: "seller_balance",
            seller_id: seller_id.to_owned(),
            balances: balances
                .iter()
                .map(|balance| SellerCurrencyBalance {
                    currency: balance.currency.to_lowercase(),
                    paid: balance.paid_minor,
                    reversed: balance.reversed_minor,
                    owed: balance.owed_minor,
                    held: balance.held_minor,
                    holds: balance
                        .holds
                        .iter()
                        .map(|hold| SellerHoldBody {
                            order: hold.order_id.clone(),
                            amount: hold.amount_minor,
                            reason: hold.reason.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct InventoryBody {
    pub sku: String,
    pub locations: Vec<LocationBody>,
}

#[derive(Serialize, ToSchema)]
pub struct LocationBody {
    pub location: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub committed: i64,
    pub available: i64,
}

impl InventoryBody {
    pub fn new(sku: &str, levels: &[InventoryLevel]) -> InventoryBody {
        InventoryBody {
            sku: sku.to_owned(),
            locations: levels
                .iter()
                .map(|level| LocationBody {
                    location: level.location.clone(),
                    on_hand: level.stock.on_hand,
                    reserved: level.stock.reserved,
                    committed: level.stock.committed,
                    available: level.stock.available(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CartBody {
    pub id: String,
    pub currency: String,
    pub lines: Vec<CartLineBody>,
    pub subtotal: i64,
    pub total: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CartLineBody {
    pub id: String,
    pub sku: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub amount: i64,
}

impl From<&CartView> for CartBody {
    fn from(cart: &CartView) -> CartBody {
        CartBody {
            id: cart.id.clone(),
            currency: cart.currency.code().to_owned(),
            lines: cart
                .line_ids
                .iter()
                .zip(&cart.priced.lines)
                .map(|(id, line)| CartLineBody {
                    id: id.clone(),
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    unit_amount: line.unit_price.amount_minor(),
                    amount: line.amount.amount_minor(),
                })
                .collect(),
            subtotal: cart.priced.subtotal.amount_minor(),
            total: cart.priced.total.amount_minor(),
        }
    }
}

/// `GET /v1/sandbox`: how to reach the built-in Stripe emulator.
#[derive(Serialize, Clone, ToSchema)]
pub struct SandboxBody {
    pub stripe_api_base: String,
    pub stripe_secret_key: String,
    pub stripe_publishable_key: String,
    pub webhook_secret: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub email: String,
    pub shipping_address: AddressBody,
    pub expected_total: i64,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressBody {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Serialize, ToSchema)]
pub struct OrderLineBody {
    pub sku: String,
    pub product_name: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub amount: i64,
}

#[derive(Serialize, ToSchema)]
pub struct OrderPaymentBody {
    pub id: String,
    pub status: String,
    pub payment_intent_id: Option<String>,
}

/// Why an order waits for a person, and the ways out.
#[derive(Serialize, ToSchema)]
pub struct AttentionBody {
    /// The stable reason code (`stock_unavailable`, `unknown_outcome`, …).
    pub reason: String,
    /// What happened, for a person.
    pub detail: String,
    /// The actions `POST /v1/orders/{id}/resolve` takes for this reason.
    pub actions: Vec<String>,
}

impl AttentionBody {
    fn of(flag: &str) -> AttentionBody {
        let flag = kassa_domain::attention::Flag::parse(flag);
        AttentionBody {
            reason: flag.code.to_owned(),
            detail: flag.detail.to_owned(),
            actions: flag
                .actions()
                .iter()
                .map(|action| action.as_str().to_owned())
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderBody {
    pub id: String,
    pub status: String,
    pub currency: String,
    pub subtotal: i64,
    pub total: i64,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub email: String,
    pub shipping_address: AddressBody,
    pub lines: Vec<OrderLineBody>,
    pub created: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_method: Option<String>,
    /// What happened, in words, while the order waits for a person; `null` otherwise (and
    /// always for the customer's view).
    pub needs_attention: Option<String>,
    /// The flag's stable code (see "When an order needs attention"); `null` when not flagged.
    pub attention_reason: Option<String>,
    /// Only for the operator, while the order is flagged: why, and the actions that resolve it
    /// (`POST /v1/orders/{id}/resolve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<OrderPaymentBody>,
    pub refunds: Vec<RefundBody>,
    pub disputes: Vec<DisputeBody>,
    /// What lost disputes took back: no longer refundable.
    pub dispute_lost_amount: i64,
    /// Only in the customer view: whether the modification window is still open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_modify: Option<bool>,
}

impl OrderBody {
    fn common(order: &kassa_app::ports::OrderRecord) -> OrderBody {
        OrderBody {
            id: order.id.clone(),
            status: order.status.as_str().to_owned(),
            currency: order.total.currency().code().to_owned(),
            subtotal: order.subtotal.amount_minor(),
            total: order.total.amount_minor(),
            captured_amount: order.captured_amount_minor,
            refunded_amount: order.refunded_amount_minor,
            email: order.email.clone(),
            shipping_address: AddressBody {
                name: order.shipping.name.clone(),
                line1: order.shipping.line1.clone(),
                city: order.shipping.city.clone(),
                postal_code: order.shipping.postal_code.clone(),
                country: order.shipping.country.clone(),
            },
            lines: order
                .lines
                .iter()
                .map(|line| OrderLineBody {
                    sku: line.sku.clone(),
                    product_name: line.product_name.clone(),
                    quantity: line.quantity,
                    unit_amount: line.unit_amount_minor,
                    amount: line.amount_minor,
                })
                .collect(),
            refunds: order.refunds.iter().map(RefundBody::from).collect(),
            disputes: order.disputes.iter().map(DisputeBody::from).collect(),
            dispute_lost_amount: order.dispute_lost_minor,
            created: order.created_at,
            capture_method: None,
            needs_attention: None,
            attention_reason: None,
            attention: None,
            payment: None,
            can_modify: None,
        }
    }

    /// Everything, for the operator.
    pub fn full(order: &kassa_app::ports::OrderRecord) -> OrderBody {
        OrderBody {
            capture_method: Some(order.capture_method.as_str().to_owned()),
            needs_attention: order.needs_attention.clone(),
            attention_reason: order
                .needs_attention
                .as_deref()
                .map(|flag| kassa_domain::attention::Flag::parse(flag).code.to_owned()),
            attention: order.needs_attention.as_deref().map(AttentionBody::of),
            payment: order.payment.as_ref().map(|payment| OrderPaymentBody {
                id: payment.id.clone(),
                status: payment.status.as_str().to_owned(),
                payment_intent_id: payment.payment_intent_id.clone(),
            }),
            ..OrderBody::common(order)
        }
    }

    /// Status, lines and totals with the personal data masked by the app, for the customer.
    pub fn for_customer(order: &kassa_app::ports::OrderRecord, can_modify: bool) -> OrderBody {
        OrderBody {
            can_modify: Some(can_modify),
            ..OrderBody::common(order)
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineChangeBody {
    pub sku: String,
    pub quantity: i64,
}

/// `PATCH /v1/orders/{id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditOrderRequest {
    pub shipping_address: Option<AddressBody>,
    pub lines: Option<Vec<LineChangeBody>>,
}

/// The body of a command that takes no fields (`POST /v1/orders/{id}/cancel`, the admin
/// endpoints): none, or `{}`; anything else is refused like any unknown field.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// `POST /v1/orders/{id}/capture`; an empty body captures what the order says.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    pub amount: Option<i64>,
}

/// `POST /v1/orders/{id}/resolve`: what a person does about a flagged order, and why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// One of the actions the order's `attention.actions` lists.
    pub action: String,
    /// Why, for the audit trail (kept with who resolved it).
    pub note: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub order_id: String,
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub restock: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct RefundBody {
    pub id: String,
    #[schema(value_type = String, example = "refund")]
    pub object: &'static str,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
    pub restock: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub created: i64,
}

impl From<&kassa_app::ports::RefundRecord> for RefundBody {
    fn from(refund: &kassa_app::ports::RefundRecord) -> RefundBody {
        RefundBody {
            id: refund.id.clone(),
            object: "refund",
            order_id: refund.order_id.clone(),
            amount: refund.amount_minor,
            currency: refund.currency.clone(),
            status: refund.status.as_str().to_owned(),
            reason: refund.reason.clone(),
            restock: refund.restock,
            failure_reason: refund.failure_reason.clone(),
            created: refund.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DisputeBody {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
    pub evidence_due_by: Option<i64>,
}

impl From<&kassa_app::ports::DisputeRecord> for DisputeBody {
    fn from(dispute: &kassa_app::ports::DisputeRecord) -> DisputeBody {
        DisputeBody {
            id: dispute.id.clone(),
            amount: dispute.amount_minor,
            currency: dispute.currency.clone(),
            reason: dispute.reason.clone(),
            status: dispute.status.clone(),
            evidence_due_by: dispute.evidence_due_by,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventBody {
    pub entity_type: String,
    pub entity_id: String,
    pub action: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub detail: Option<String>,
    pub created: i64,
}

impl From<&kassa_app::ports::AuditRecord> for AuditEventBody {
    fn from(record: &kassa_app::ports::AuditRecord) -> AuditEventBody {
        AuditEventBody {
            entity_type: record.entity_type.clone(),
            entity_id: record.entity_id.clone(),
            action: record.action.clone(),
            actor: record.actor.clone(),
            request_id: record.request_id.clone(),
            client_ip: record.client_ip.clone(),
            before: record.before_state.clone(),
            after: record.after_state.clone(),
            detail: record.detail.clone(),
            created: record.created_at,
        }
    }
}

/// `POST /v1/carts/{id}/checkout` → 201.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckoutBody {
    pub order: CheckoutOrderBody,
    pub payment: CheckoutPaymentBody,
    /// The customer's credential for this order (as the Bearer of `/v1/orders/{id}`); never
    /// put it in a URL.
    pub order_token: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckoutOrderBody {
    pub id: String,
    pub status: String,
    pub total: i64,
    pub currency: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckoutPaymentBody {
    pub id: String,
    pub payment_intent_id: String,
    /// Confirm the PaymentIntent with it at Stripe (or the sandbox emulator).
    pub client_secret: Option<String>,
    pub status: String,
}

/// `POST /v1/carts/{id}/checkout_session`: the order and its hosted payment page.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckoutSessionBody {
    pub order: CheckoutOrderBody,
    pub checkout_session: HostedSessionBody,
    /// The customer's credential for this order (as the Bearer of `/v1/orders/{id}`); never
    /// put it in a URL. The hosted page's return URL carries only the session id.
    pub order_token: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct HostedSessionBody {
    pub id: String,
    /// Send the customer here (Stripe's hosted page, or the sandbox emulator's).
    pub url: String,
    /// Unix seconds; the page closes then and the order's stock is released.
    pub expires_at: i64,
}

/// `GET /v1/orders/{id}/events`: the order's audit trail, oldest first.
#[derive(Serialize, ToSchema)]
pub struct AuditEventList {
    #[schema(value_type = String, example = "list")]
    pub object: &'static str,
    pub data: Vec<AuditEventBody>,
}

/// A merchant notification from the outbox.
#[derive(Serialize, ToSchema)]
pub struct NotificationBody {
    pub id: String,
    #[serde(rename = "type")]
    pub topic: String,
    /// `pending`, `delivered`, `failed` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created: i64,
}

#[derive(Serialize, ToSchema)]
pub struct NotificationList {
    #[schema(value_type = String, example = "list")]
    pub object: &'static str,
    pub data: Vec<NotificationBody>,
}

/// A replayed notification, due again.
#[derive(Serialize, ToSchema)]
pub struct ReplayedBody {
    pub id: String,
    #[schema(example = "pending")]
    pub status: String,
}

/// A Stripe event in Kassa's inbox.
#[derive(Serialize, ToSchema)]
pub struct WebhookEventBody {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `received`, `processed`, `ignored`, `failed` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub received: i64,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEventList {
    #[schema(value_type = String, example = "list")]
    pub object: &'static str,
    pub data: Vec<WebhookEventBody>,
}

/// `POST /v1/webhooks/stripe` → 200: recorded (or already recorded).
#[derive(Serialize, ToSchema)]
pub struct ReceivedBody {
    pub received: bool,
}

/// `POST /v1/admin/check`: the invariants of docs/risks.md against the database and the provider.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct CheckBody {
    pub passed: bool,
    pub payments_checked: usize,
    /// Provider calls that got no answer: those payments were not compared.
    pub provider_errors: usize,
    pub violations: Vec<ViolationBody>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ViolationBody {
    /// The invariant's number in docs/risks.md.
    pub invariant: u8,
    /// The ids involved (orders, payments, refunds, events, SKUs).
    pub ids: Vec<String>,
    pub what: String,
}

/// `POST /v1/admin/reconcile`: one reconciliation run.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ReconcileBody {
    pub payments_checked: usize,
    pub refunds_checked: usize,
    pub events_read: usize,
    pub events_recovered: usize,
    /// Sellers whose account's readiness was read from Stripe.
    pub sellers_checked: usize,
    pub provider_errors: usize,
    pub differences: Vec<DifferenceBody>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct DifferenceBody {
    pub order_id: String,
    pub what: String,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct ProbeBody {
    /// `ok` (alive), `ready` or `not_ready`.
    #[schema(value_type = String)]
    pub status: &'static str,
}

/// `GET /v1/admin/webhook-events?status=…` (the description's name for the query's values).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum EventStatusFilter {
    Failed,
    Dead,
}

/// `GET /v1/admin/notifications?status=…` (the description's name for the query's values).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum NotificationStatusFilter {
    Pending,
    Delivered,
    Failed,
    Dead,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanRequest {
    pub name: String,
    pub unit_amount: i64,
    pub currency: String,
    /// `month` or `year`.
    pub interval: String,
    /// Credits granted for each paid period.
    pub credits: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PlanBody {
    pub id: String,
    #[schema(value_type = String, example = "plan")]
    pub object: &'static str,
    pub name: String,
    pub unit_amount: i64,
    pub currency: String,
    pub interval: String,
    pub credits: i64,
    pub created: i64,
}

impl From<&PlanRecord> for PlanBody {
    fn from(plan: &PlanRecord) -> PlanBody {
        PlanBody {
            id: plan.id.clone(),
            object: "plan",
            name: plan.name.clone(),
            unit_amount: plan.unit_amount_minor,
            currency: plan.currency.clone(),
            interval: plan.interval.clone(),
            credits: plan.credits,
            created: plan.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    pub plan_id: String,
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct SubscribeBody {
    pub customer_id: String,
    pub subscription_id: String,
    pub checkout_session: HostedSessionBody,
}

impl From<&SubscriptionPage> for SubscribeBody {
    fn from(page: &SubscriptionPage) -> SubscribeBody {
        SubscribeBody {
            customer_id: page.customer_id.clone(),
            subscription_id: page.subscription_id.clone(),
            checkout_session: HostedSessionBody {
                id: page.session_id.clone(),
                url: page.url.clone(),
                expires_at: page.expires_at,
            },
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelSubscriptionRequest {
    /// `true` (the default): at the end of the period paid for; `false`: now.
    pub at_period_end: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionBody {
    pub id: String,
    #[schema(value_type = String, example = "subscription")]
    pub object: &'static str,
    pub customer_id: String,
    pub plan_id: String,
    /// `incomplete`, `active`, `past_due` or `canceled`.
    pub status: String,
    /// The end of the last period paid for.
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub created: i64,
}

impl From<&SubscriptionRecord> for SubscriptionBody {
    fn from(subscription: &SubscriptionRecord) -> SubscriptionBody {
        SubscriptionBody {
            id: subscription.id.clone(),
            object: "subscription",
            customer_id: subscription.customer_id.clone(),
            plan_id: subscription.plan_id.clone(),
            status: subscription.status.as_str().to_owned(),
            current_period_end: subscription.current_period_end,
            cancel_at_period_end: subscription.cancel_at_period_end,
            created: subscription.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BalanceBody {
    pub balance: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerBody {
    pub id: String,
    #[schema(value_type = String, example = "customer")]
    pub object: &'static str,
    pub email: String,
    /// The customer at Stripe, once created (the first subscription creates it).
    pub stripe_customer_id: Option<String>,
    pub subscriptions: Vec<SubscriptionBody>,
    pub credits: BalanceBody,
    pub created: i64,
}

impl From<&CustomerView> for CustomerBody {
    fn from(view: &CustomerView) -> CustomerBody {
        CustomerBody {
            id: view.customer.id.clone(),
            object: "customer",
            email: view.customer.email.clone(),
            stripe_customer_id: view.customer.provider_customer_id.clone(),
            subscriptions: view
                .subscriptions
                .iter()
                .map(SubscriptionBody::from)
                .collect(),
            credits: BalanceBody {
                balance: view.customer.balance,
            },
            created: view.customer.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DebitRequest {
    /// Credits to spend, at least 1.
    pub amount: i64,
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreditEntryBody {
    pub id: String,
    #[schema(value_type = String, example = "credit_entry")]
    pub object: &'static str,
    /// Positive for a grant, negative for a debit or a clawback.
    pub amount: i64,
    /// `grant`, `debit` or `clawback`.
    pub kind: String,
    /// What the entry is for, once: `invoice:{id}`, `order:{id}`, a debit's key.
    pub business_key: String,
    pub reason: Option<String>,
    pub created: i64,
}

impl From<&CreditEntry> for CreditEntryBody {
    fn from(entry: &CreditEntry) -> CreditEntryBody {
        CreditEntryBody {
            id: entry.id.clone(),
            object: "credit_entry",
            amount: entry.amount,
            kind: entry.kind.as_str().to_owned(),
            business_key: entry.business_key.clone(),
            reason: entry.reason.clone(),
            created: entry.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreditsBody {
    pub balance: i64,
    /// Newest first, at most 100.
    pub entries: Vec<CreditEntryBody>,
}
