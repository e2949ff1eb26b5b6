//! Capture, cancel and edit a placed order (risks O1–O3, P3, P5, P7), as atomic phases around
//! one provider call: the store marks the order with its pending operation under the order's
//! lock, the provider is called with a key derived from the payment, and its answer is applied
//! through the same plan path as webhooks. An unknown outcome leaves the operation pending; the
//! caller's retry or the background worker finishes it with the same key. Stock is never
//! released while the PaymentIntent can still be charged.

use kassa_domain::commands::{LineChange, Operation};
use kassa_domain::limits::LINE_QUANTITY_MAX;
use kassa_domain::payment::PaymentStatus;
use kassa_domain::refund::RefundStatus;
use kassa_domain::text::fields;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::order_token::TokenRights;
use crate::ports::{
    Actor, CancelStart, CaptureStart, EditOutcome, OrderEdit, OrderRecord, ProviderError,
    ProviderPaymentIntent, SessionStatus, ShippingAddress,
};
use crate::refunds::RefundInput;
use crate::validate;

/// How long an operation may stay pending before the background worker resumes it (its own
/// request may still be calling the provider until then): the default of
/// `KASSA_OPERATION_RESUME_SECS`, the lease of an operation whose instance died.
pub const OPERATION_RESUME_AFTER_SECS: i64 = 60;
const PROVIDER_RETRY_AFTER_SECS: i64 = 2;

/// Who asks for a change: the operator, or the customer with the order token.
#[derive(Debug, Clone)]
pub enum Requester {
    Operator,
    Customer { token: String },
}

/// A requested edit, as sent.
#[derive(Debug, Clone, Default)]
pub struct EditRequest {
    pub shipping: Option<ShippingAddress>,
    pub lines: Vec<LineChange>,
}

/// The provider did not answer; the caller may retry after a moment.
pub(crate) fn unavailable() -> AppError {
    AppError::ProviderUnavailable {
        retry_after_secs: PROVIDER_RETRY_AFTER_SECS,
    }
}

impl App {
    /// Captures an authorized order now: `amount_minor`, or what the order says to capture. A
    /// capture of this order left in progress (its caller went away) is resumed.
    pub async fn capture_order(
        &self,
        order_id: &str,
        amount_minor: Option<i64>,
        actor: &Actor,
    ) -> AppResult<OrderRecord> {
        self.capture(order_id, amount_minor, true, actor).await
    }

    async fn capture(
        &self,
        order_id: &str,
        amount_minor: Option<i64>,
        may_resume: bool,
        actor: &Actor,
    ) -> AppResult<OrderRecord> {
        let now = self.clock.now_secs();
        let start = self
            .store
            .begin_capture(order_id, amount_minor, may_resume, actor, now)
            .await?;
        let (payment_id, intent_id, amount, fee) = match start {
            CaptureStart::Capture {
                payment_id,
                payment_intent_id,
                amount_minor,
                application_fee_minor,
            } => (
                payment_id,
                payment_intent_id,
                amount_minor,
                application_fee_minor,
            ),
            CaptureStart::Refused(refusal) => return Err(refusal.into()),
            CaptureStart::OrderMissing => return Err(AppError::NotFound { what: "order" }),
        };
        // The amount is part of the key: a later capture of another amount is another request.
        let key = kassa_domain::provider_keys::capture(&payment_id, amount);
        match self
            .provider
            .capture_payment_intent(&intent_id, Some(amount), fee, &key)
            .await
        {
            Ok(intent) => {
                self.observe_intent(&intent, actor).await?;
                if intent.status != PaymentStatus::Succeeded {
                    self.store
                        .end_operation(order_id, Operation::Capture, actor, self.clock.now_secs())
                        .await?;
                    return Err(AppError::InvalidState {
                        message: format!("the payment provider left the payment {}", intent.status),
                    });
                }
            }
            Err(ProviderError::Definite { message, .. }) => {
                // The provider will not capture (expired, canceled, captured already): apply
                // what it holds and give the order back.
                let current = self.current_intent(&intent_id).await?;
                self.observe_intent(&current, actor).await?;
                self.store
                    .end_operation(order_id, Operation::Capture, actor, self.clock.now_secs())
                    .await?;
                if current.status != PaymentStatus::Succeeded {
                    return Err(AppError::InvalidState {
                        message: format!("the payment provider did not capture: {message}"),
                    });
                }
            }
            Err(ProviderError::Unknown { .. }) => return Err(unavailable()),
        }
        self.order(order_id).await
    }

    /// Cancels an order: before capture the PaymentIntent is canceled at the provider first,
    /// and only then are the reservations released; after capture it is a full refund with
    /// restock. `requester` may be the customer while the modification window is open.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        requester: &Requester,
        actor: &Actor,
    ) -> AppResult<OrderRecord> {
        // The operator may cancel at any time; the customer inside the window.
        self.check_may_modify(order_id, requester, false).await?;
        let now = self.clock.now_secs();
        match self.store.begin_cancel(order_id, actor, now).await? {
            CancelStart::OrderMissing => return Err(AppError::NotFound { what: "order" }),
            CancelStart::Refused(refusal) => return Err(refusal.into()),
            CancelStart::AlreadyCanceled => {}
            CancelStart::RefundAll { .. } => self.refund_for_cancel(order_id, actor).await?,
            CancelStart::AtProvider {
                payment_id,
                payment_intent_id,
            } => {
                self.cancel_at_provider(order_id, &payment_id, &payment_intent_id, actor)
                    .await?;
            }
            CancelStart::HostedPage {
                payment_id,
                session_id,
            } => {
                let session = self
                    .end_hosted_page(&payment_id, &session_id, actor)
                    .await?;
                match (session.status, session.payment_intent_id) {
                    // Expired: the order is canceled and its stock released.
                    (SessionStatus::Expired, _) => {}
                    // Completed meanwhile: the intent says what was paid. Canceled if only
                    // authorized; refunded with restock if captured (risk P7).
                    (SessionStatus::Complete, Some(intent_id)) => {
                        self.cancel_at_provider(order_id, &payment_id, &intent_id, actor)
                            .await?;
                    }
                    // The provider would not expire it, yet it is open: the cancel stays
                    // pending and is finished later.
                    (SessionStatus::Open, _) => return Err(unavailable()),
                    (status, None) => {
                        let reason = format!(
                            "hosted_page_without_payment: the cancel found its page {status:?} with no PaymentIntent"
                        );
                        self.give_up_operation(order_id, Operation::Cancel, &reason, actor)
                            .await?;
                        return Err(AppError::InvalidState { message: reason });
                    }
                }
            }
        }
        self.order(order_id).await
    }

    async fn cancel_at_provider(
        &self,
        order_id: &str,
        payment_id: &str,
        intent_id: &str,
        actor: &Actor,
    ) -> AppResult<()> {
        let key = kassa_domain::provider_keys::cancel_payment_intent(payment_id);
        let current = match self.provider.cancel_payment_intent(intent_id, &key).await {
            Ok(intent) => intent,
            // Not cancelable any more (it succeeded or is processing): what does it hold?
            Err(ProviderError::Definite { .. }) => self.current_intent(intent_id).await?,
            Err(ProviderError::Unknown { .. }) => return Err(unavailable()),
        };
        self.observe_intent(&current, actor).await?;
        match current.status {
            PaymentStatus::Canceled => Ok(()),
            // It was paid after all (cancel raced the confirmation, risk P7): the cancel becomes
            // a full refund with restock.
            PaymentStatus::Succeeded => self.refund_for_cancel(order_id, actor).await,
            PaymentStatus::Processing => Err(AppError::InvalidState {
                message: "the payment is processing; the cancel finishes once it settles".into(),
            }),
            other => Err(AppError::InvalidState {
                message: format!("the payment provider could not cancel a {other} payment"),
            }),
        }
    }

    /// The refund a cancel after capture makes: everything still refundable, with restock. Its
    /// key is derived from the order and the number of its refunds that failed, so a resumed
    /// cancel asks for the same refund and a new cancel after a refused one asks afresh.
    async fn refund_for_cancel(&self, order_id: &str, actor: &Actor) -> AppResult<()> {
        let failed = self
            .order(order_id)
            .await?
            .refunds
            .iter()
            .filter(|refund| refund.status == RefundStatus::Failed)
            .count();
        let input = RefundInput {
            order_id: order_id.to_owned(),
            key_scope: "kassa".into(),
            idempotency_key: Some(format!("cancel:{order_id}:{failed}")),
            amount_minor: None,
            reason: Some("requested_by_customer".into()),
            restock: true,
            actor: actor.clone(),
        };
        let refused = match self.create_refund(input).await {
            Ok(refund) if refund.status == RefundStatus::Failed => Some(
                refund
                    .failure_reason
                    .unwrap_or_else(|| "no reason given".into()),
            ),
            Ok(_) | Err(AppError::AmountExceedsRefundable { .. }) => None,
            Err(error) => return Err(error),
        };
        let now = self.clock.now_secs();
        self.store
            .end_operation(order_id, Operation::Cancel, actor, now)
            .await?;
        match refused {
            None => Ok(()),
            Some(reason) => Err(AppError::InvalidState {
                message: format!(
                    "the payment provider refused the refund ({reason}); the order stays paid"
                ),
            }),
        }
    }

    /// Changes an order inside its modification window: the shipping address, and while the
    /// payment is authorized, lower quantities or removed lines (risks O1, O2).
    pub async fn edit_order(
        &self,
        order_id: &str,
        request: EditRequest,
        requester: &Requester,
        actor: &Actor,
    ) -> AppResult<OrderRecord> {
        let edit = checked_edit(request)?;
        self.check_may_modify(order_id, requester, true).await?;
        let now = self.clock.now_secs();
        match self.store.edit_order(order_id, &edit, actor, now).await? {
            EditOutcome::Edited => self.order(order_id).await,
            EditOutcome::Refused(refusal) => Err(refusal.into()),
            EditOutcome::OrderMissing => Err(AppError::NotFound { what: "order" }),
        }
    }

    /// The customer changes an order only inside the modification window, counted from the
    /// order's creation (risk S3); the operator too when `operator_in_window` (edits), not for a
    /// cancel.
    async fn check_may_modify(
        &self,
        order_id: &str,
        requester: &Requester,
        operator_in_window: bool,
    ) -> AppResult<()> {
        let now = self.clock.now_secs();
        if let Requester::Customer { token } = requester {
            match self.order_tokens.verify(token, order_id, now) {
                Some(TokenRights::ReadAndModify) => return Ok(()),
                Some(TokenRights::Read) => return Err(window_closed()),
                None => return Err(AppError::Unauthorized),
            }
        }
        let order = self.order(order_id).await?;
        if operator_in_window && now - order.created_at >= self.settings.modification_window_secs {
            return Err(window_closed());
        }
        Ok(())
    }

    /// Captures authorized orders whose modification window has closed; returns how many. With
    /// several instances each order is captured by one: the others find it taken.
    pub async fn capture_due_orders(&self, batch_max: i64) -> AppResult<usize> {
        let now = self.clock.now_secs();
        let due = self.store.orders_due_for_capture(now, batch_max).await?;
        let actor = worker("scheduled capture");
        Ok(self
            .each(due, |app, id| {
                let actor = actor.clone();
                async move { app.capture(&id, None, false, &actor).await }
            })
            .await)
    }

    /// Finishes captures, cancels and expiries whose request went away mid-way (risk P5).
    pub async fn finish_pending_operations(&self, batch_max: i64) -> AppResult<usize> {
        let idle_before = self.clock.now_secs() - self.settings.operation_resume_secs;
        let captures = self
            .store
            .orders_with_operation(Operation::Capture, idle_before, batch_max)
            .await?;
        let cancels = self
            .store
            .orders_with_operation(Operation::Cancel, idle_before, batch_max)
            .await?;
        let expiries = self
            .store
            .orders_with_operation(Operation::Expire, idle_before, batch_max)
            .await?;
        let actor = worker("operation finisher");
        let captured = self
            .each(captures, |app, id| {
                let actor = actor.clone();
                async move { app.capture_order(&id, None, &actor).await }
            })
            .await;
        let canceled = self
            .each(cancels, |app, id| {
                let actor = actor.clone();
                async move { app.cancel_order(&id, &Requester::Operator, &actor).await }
            })
            .await;
        let mut expired = 0;
        for order_id in expiries {
            match self.expire_checkout(&order_id).await {
                Ok(_) => expired += 1,
                Err(error) => {
                    tracing::warn!(%order_id, %error, "finishing an expiry failed; will retry")
                }
            }
        }
        Ok(captured + canceled + expired)
    }

    /// Runs `command` for each order; one failing never stops the others (it is logged and
    /// tried again next round). Returns how many succeeded.
    async fn each<F, Fut>(&self, order_ids: Vec<String>, command: F) -> usize
    where
        F: Fn(App, String) -> Fut,
        Fut: Future<Output = AppResult<OrderRecord>>,
    {
        let mut done = 0;
        for order_id in order_ids {
            match command(self.clone(), order_id.clone()).await {
                Ok(_) => done += 1,
                Err(error) => tracing::warn!(%order_id, %error, "order command failed; will retry"),
            }
        }
        done
    }

    /// Hands an order to a person: flagged with `reason`, its pending `operation` ended so that
    /// no worker retries it forever.
    pub(crate) async fn give_up_operation(
        &self,
        order_id: &str,
        operation: Operation,
        reason: &str,
        actor: &Actor,
    ) -> AppResult<()> {
        let now = self.clock.now_secs();
        self.store.flag_order(order_id, reason, actor, now).await?;
        self.store
            .end_operation(order_id, operation, actor, now)
            .await?;
        Ok(())
    }

    pub(crate) async fn current_intent(&self, intent_id: &str) -> AppResult<ProviderPaymentIntent> {
        self.provider
            .retrieve_payment_intent(intent_id)
            .await
            .map_err(|_| unavailable())
    }

    /// Applies the provider's view of an intent through the webhook plan path.
    pub(crate) async fn observe_intent(
        &self,
        intent: &ProviderPaymentIntent,
        actor: &Actor,
    ) -> AppResult<()> {
        let now = self.clock.now_secs();
        match self.store.observe_payment_intent(intent, actor, now).await {
            Ok(_) => Ok(()),
            Err(error) => {
                self.surface_impossible_move(&error, actor).await;
                Err(error.into())
            }
        }
    }
}

fn window_closed() -> AppError {
    AppError::InvalidState {
        message: "the modification window of this order has closed".into(),
    }
}

fn worker(name: &str) -> Actor {
    Actor {
        kind: format!("worker ({name})"),
        request_id: None,
        client_ip: None,
    }
}

/// The edit with its address in stored spelling and its lines within bounds.
fn checked_edit(request: EditRequest) -> AppResult<OrderEdit> {
    let shipping = request
        .shipping
        .map(|address| {
            Ok::<_, AppError>(ShippingAddress {
                name: validate::shaped(
                    "shipping_address.name",
                    fields::PERSON_NAME,
                    &address.name,
                )?,
                line1: validate::shaped(
                    "shipping_address.line1",
                    fields::ADDRESS_LINE,
                    &address.line1,
                )?,
                city: validate::shaped("shipping_address.city", fields::CITY, &address.city)?,
                postal_code: validate::shaped(
                    "shipping_address.postal_code",
                    fields::POSTAL_CODE,
                    &address.postal_code,
                )?,
                country: validate::shaped(
                    "shipping_address.country",
                    fields::COUNTRY,
                    &address.country,
                )?,
            })
        })
        .transpose()?;
    for (index, line) in request.lines.iter().enumerate() {
        validate::shaped(&format!("lines[{index}].sku"), fields::SKU, &line.sku)?;
        if !(0..=LINE_QUANTITY_MAX).contains(&line.quantity) {
            return Err(AppError::invalid(
                &format!("lines[{index}].quantity"),
                format!("must be between 0 (remove the line) and {LINE_QUANTITY_MAX}"),
            ));
        }
    }
    if shipping.is_none() && request.lines.is_empty() {
        return Err(AppError::invalid(
            "lines",
            "an edit changes shipping_address or lines",
        ));
    }
    Ok(OrderEdit {
        shipping,
        lines: request.lines,
    })
}
